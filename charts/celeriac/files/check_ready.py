"""`helm test` check, run by the operator image: the celeriac.io resources are served and the operator is available.

Reads CELERIAC_TEST_NAMESPACE, CELERIAC_TEST_DEPLOYMENT and CELERIAC_TEST_TIMEOUT_S. Prints one line per check
and exits 1 with what is wrong. Uses only the Kubernetes client the operator image already has; in a pod it
authenticates with the test's ServiceAccount (read-only), elsewhere with $KUBECONFIG.
"""

import os
import sys
import time

from kubernetes import client, config

RESOURCES = ("taskqueues", "workerpools", "beatschedules")


def main() -> int:
    namespace = os.environ["CELERIAC_TEST_NAMESPACE"]
    deployment = os.environ["CELERIAC_TEST_DEPLOYMENT"]
    timeout_s = float(os.environ.get("CELERIAC_TEST_TIMEOUT_S", "120"))
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        config.load_kube_config()
    custom = client.CustomObjectsApi()
    for plural in RESOURCES:
        try:
            items = custom.list_namespaced_custom_object("celeriac.io", "v1alpha1", namespace, plural)["items"]
        except client.ApiException as exc:
            print(f"FAIL {plural}.celeriac.io is not served in {namespace}: {exc.status} {exc.reason}"
                  " (install the CRDs: crds.enabled=true or kubectl apply -f crds/)")
            return 1
        print(f"ok   {plural}.celeriac.io served ({len(items)} in {namespace})")
    apps = client.AppsV1Api()
    deadline = time.monotonic() + timeout_s
    while True:
        status = apps.read_namespaced_deployment(deployment, namespace).status
        wanted, available = status.replicas or 0, status.available_replicas or 0
        if wanted and available >= wanted:
            print(f"ok   operator {namespace}/{deployment}: {available}/{wanted} replicas available")
            return 0
        if time.monotonic() > deadline:
            print(f"FAIL operator {namespace}/{deployment}: {available}/{wanted} replicas available after"
                  f" {timeout_s:g} s (kubectl -n {namespace} describe deployment {deployment}; kubectl logs)")
            return 1
        time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())

"""WorkerPool -> Deployment ``<name>-worker`` (+ PodDisruptionBudget ``<name>-worker`` when it has > 1 replica).

Pure: the parsed WorkerPool, the resolved TaskQueues and the operator's default image in, dicts out.
``spec.replicas`` is left out of the Deployment when the autoscaler owns it (``replicas=None``), so the
reconcile's server-side apply and the autoscaler's never fight over the field.
"""

from __future__ import annotations

from typing import Any

from celeriac_operator import names
from celeriac_operator.builders import common
from celeriac_operator.models import WorkerPool
from celeriac_operator.queues import ResolvedQueues

Obj = dict[str, Any]

CONTAINER = "worker"
HEALTH_PORT_NAME = "health"

BROKER_ENV = {"celeriac": "CELERIAC_BROKER_URL", "celery": "CELERY_BROKER_URL"}
"""Where each runtime reads its broker URL (Celery: ``celery/app/utils.py`` reads ``CELERY_BROKER_URL``)."""
BACKEND_ENV = {"celeriac": "CELERIAC_RESULT_BACKEND", "celery": "CELERY_RESULT_BACKEND"}


def deployment_name(pool: WorkerPool) -> str:
    return f"{pool.name}-worker"


def selector(pool: WorkerPool) -> dict[str, str]:
    return common.selector_labels(names.LABEL_WORKERPOOL, pool.name, names.COMPONENT_WORKER)


def labels(pool: WorkerPool) -> dict[str, str]:
    return common.labels(names.LABEL_WORKERPOOL, pool.name, names.COMPONENT_WORKER)


def command(pool: WorkerPool, queues: ResolvedQueues) -> list[str]:
    """The worker's command line for the pool's runtime (``celeriac worker`` or ``celery ... worker``)."""
    spec = pool.spec
    queue_list = ",".join(queues.broker_queues)
    common_args = ["-Q", queue_list, "-c", str(spec.concurrency), "-P", spec.pool,
                   "--prefetch-multiplier", str(spec.prefetch_multiplier)]
    if spec.runtime == "celery":
        return ["celery", "-A", spec.app, "worker", *common_args, *(spec.extra_args or [])]
    return [
        "celeriac", "worker", "-A", spec.app, *common_args,
        "--shutdown-timeout", str(spec.shutdown_timeout_seconds),
        "--health-port", str(spec.health_port),
        *(spec.extra_args or []),
    ]


def env(pool: WorkerPool, queues: ResolvedQueues) -> list[Obj]:
    """Broker (and result backend) URLs from Secrets, the pod's identity, then the user's variables.

    A user variable with the same name as one of ours replaces ours.
    """
    spec = pool.spec
    ours = [common.secret_env(BROKER_ENV[spec.runtime], queues.secret_name, queues.secret_key)]
    if spec.result_backend is not None:
        ref = spec.result_backend.secret_ref
        ours.append(common.secret_env(BACKEND_ENV[spec.runtime], ref.name, ref.key))
    ours += common.downward_env()
    user = [var.to_json() for var in spec.env or []]
    overridden = {var["name"] for var in user}
    return [var for var in ours if var["name"] not in overridden] + user


def container(pool: WorkerPool, queues: ResolvedQueues, default_image: str) -> Obj:
    spec = pool.spec
    result: Obj = {
        "name": CONTAINER,
        "image": spec.image or default_image,
        "command": command(pool, queues),
        "env": env(pool, queues),
        "securityContext": common.container_security_context(),
        "volumeMounts": [common.tmp_mount()],
    }
    if spec.image_pull_policy:
        result["imagePullPolicy"] = spec.image_pull_policy
    if spec.resources is not None:
        result["resources"] = spec.resources.to_json()
    if spec.runtime == "celeriac":
        result["ports"] = [{"name": HEALTH_PORT_NAME, "containerPort": spec.health_port, "protocol": "TCP"}]
        result["livenessProbe"] = {
            "httpGet": {"path": "/livez", "port": HEALTH_PORT_NAME},
            "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3,
        }
        result["readinessProbe"] = {
            "httpGet": {"path": "/readyz", "port": HEALTH_PORT_NAME},
            "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 2,
        }
    return result


def pod_template(pool: WorkerPool, queues: ResolvedQueues, default_image: str) -> Obj:
    spec = pool.spec
    pod_labels = {**(spec.pod_labels or {}), **labels(pool)}
    pod_spec: Obj = {
        "containers": [container(pool, queues, default_image)],
        "terminationGracePeriodSeconds": spec.termination_grace_period_seconds,
        "securityContext": common.pod_security_context(),
        "volumes": [common.tmp_volume()],
    }
    optional = {
        "nodeSelector": spec.node_selector,
        "tolerations": spec.tolerations,
        "affinity": spec.affinity,
        "topologySpreadConstraints": spec.topology_spread_constraints,
        "priorityClassName": spec.priority_class_name,
        "serviceAccountName": spec.service_account_name,
    }
    pod_spec.update({key: value for key, value in optional.items() if value})
    template_meta: Obj = {"labels": pod_labels}
    if spec.pod_annotations:
        template_meta["annotations"] = dict(spec.pod_annotations)
    return {"metadata": template_meta, "spec": pod_spec}


def deployment(pool: WorkerPool, queues: ResolvedQueues, *, default_image: str, replicas: int | None) -> Obj:
    """The worker Deployment; ``replicas=None`` leaves ``spec.replicas`` to the autoscaler's field manager."""
    spec: Obj = {
        "selector": {"matchLabels": selector(pool)},
        "template": pod_template(pool, queues, default_image),
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": common.metadata(pool, deployment_name(pool), labels(pool)),
        "spec": spec,
    }


def wants_pdb(pool: WorkerPool) -> bool:
    """A PodDisruptionBudget only makes sense when the pool can have more than one replica."""
    scaling = pool.autoscaling
    return (scaling.max_replicas if scaling.enabled else pool.spec.replicas) > 1


def pdb(pool: WorkerPool) -> Obj:
    """At most one worker evicted at a time by voluntary disruptions (node drains)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": common.metadata(pool, deployment_name(pool), labels(pool)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(pool)}},
    }

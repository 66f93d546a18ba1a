"""``celeriac beat``: run the scheduler (one of N replicas; the Lease picks the one that fires).

Sources: ``--from-resource NAMESPACE/NAME`` (a BeatSchedule, watched; changes apply without a
restart) or the app's ``beat_schedule`` (config mode). Leader election uses the Lease
``<name>-beat`` next to the resource, or ``--lease NS/NAME`` (default ``celeriac-beat`` in
``$POD_NAMESPACE``, else ``default``) in config mode. ``--standalone`` skips election and keeps
state in memory: local development only, never with more than one replica.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import threading
from typing import Any

from celeriac.beat import BeatConfigError
from celeriac.beat.entries import LeaseTimings, spec_from_beat_schedule
from celeriac.beat.leader import KubeLeaseClient, LeaderElector
from celeriac.beat.publisher import Publisher
from celeriac.beat.resource import BeatScheduleClient, ResourceSource, StatusStore, parse_ref
from celeriac.beat.service import BeatService, Source, StaticSource
from celeriac.beat.state import LeaseAnnotationStore, MemoryStore, SlotStore

QUEUES_ENV = "CELERIAC_BEAT_QUEUES"
"""JSON object ``{"<TaskQueue name>": "<broker queue>"}`` set by the operator; unknown names pass through."""
DEFAULT_LEASE_NAME = "celeriac-beat"


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register ``celeriac beat`` on the top-level subparsers."""
    beat = commands.add_parser("beat", parents=[common], help="run the scheduler",
                               description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    beat.add_argument("--from-resource", metavar="NS/NAME", help="run the BeatSchedule NS/NAME (watched)")
    beat.add_argument("--lease", metavar="NS/NAME",
                      help="config mode's election Lease (default celeriac-beat in $POD_NAMESPACE or default)")
    beat.add_argument("--lease-duration", type=float, metavar="S",
                      help="seconds an unrenewed Lease stays held (default: spec.leaderElection, else 15)")
    beat.add_argument("--renew-deadline", type=float, metavar="S",
                      help="seconds a leader may fail to renew before it stops firing (default 10)")
    beat.add_argument("--retry-period", type=float, metavar="S",
                      help="seconds between renew/acquire attempts (default 2)")
    beat.add_argument("--identity", help="Lease holder identity (default $POD_NAME, else the host name)")
    beat.add_argument("--standalone", action="store_true",
                      help="no election, state in memory: local development with ONE replica only")
    beat.add_argument("-l", "--loglevel", default="info", type=str.lower,
                      choices=["debug", "info", "warning", "error", "critical"])
    beat.set_defaults(handler=cmd_beat)


def _usage(message: str) -> Exception:
    from celeriac.cli import UsageError

    return UsageError(message)


def _queues() -> dict[str, str]:
    text = os.environ.get(QUEUES_ENV)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise _usage(f"{QUEUES_ENV} is not JSON ({exc}); expected {{\"<TaskQueue>\": \"<queue>\"}}") from exc
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _usage(f"{QUEUES_ENV} must be a JSON object of strings, got {text!r}")
    return value


def _timings(app: Any, args: argparse.Namespace, base: LeaseTimings | None) -> LeaseTimings:
    conf = app.conf
    base = base or LeaseTimings(float(conf.beat_lease_duration_s), float(conf.beat_renew_deadline_s),
                                float(conf.beat_retry_period_s))
    try:
        return LeaseTimings(
            args.lease_duration if args.lease_duration is not None else base.lease_duration_s,
            args.renew_deadline if args.renew_deadline is not None else base.renew_deadline_s,
            args.retry_period if args.retry_period is not None else base.retry_period_s,
        )
    except BeatConfigError as exc:
        raise _usage(str(exc)) from exc


def _kube_client() -> Any:
    """In-cluster config when KUBERNETES_SERVICE_HOST is set, else $KUBECONFIG / ~/.kube/config."""
    from kubernetes import client
    from kubernetes import config as config_module

    config: Any = config_module  # untyped package
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        return config.new_client_from_config(config_file=os.environ.get("KUBECONFIG") or None)
    except Exception as exc:  # ConfigException, missing files
        raise _usage(f"no Kubernetes client configuration ({exc}); run in a pod or set KUBECONFIG") from exc


def cmd_beat(app: Any, args: argparse.Namespace) -> int:
    identity = args.identity or os.environ.get("POD_NAME") or socket.gethostname()
    if args.standalone and (args.from_resource or args.lease):
        raise _usage("--standalone runs without a Lease and Kubernetes: it excludes --from-resource and --lease")
    queues = _queues()
    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = threading.Event()
    elector: LeaderElector | None = None
    source: Source
    store: SlotStore
    if args.from_resource:
        try:
            namespace, name = parse_ref(args.from_resource)
        except BeatConfigError as exc:
            raise _usage(str(exc)) from exc
        if args.lease:
            raise _usage("--lease is for config mode; resource mode uses the Lease <name>-beat")
        api = _kube_client()
        resource = BeatScheduleClient(api, namespace, name)
        resource_source = ResourceSource(resource, stop)
        spec = resource_source.load()
        flags = (args.lease_duration, args.renew_deadline, args.retry_period)
        timings = _timings(app, args, spec.timings if spec else None)
        schedule_key = f"{namespace}/{name}"
        lease_client = KubeLeaseClient(api, namespace, f"{name}-beat", min(5.0, timings.renew_deadline_s))
        elector = LeaderElector(lease_client, identity, timings)
        source, store = resource_source, StatusStore(resource)
        timings_from_spec = all(flag is None for flag in flags)
    else:
        try:
            spec = spec_from_beat_schedule(app.conf.beat_schedule, str(app.conf.timezone or "UTC"))
        except BeatConfigError as exc:
            raise _usage(str(exc)) from exc
        if not spec.entries:
            raise _usage("the app has no beat_schedule entries; set app.conf.beat_schedule or use --from-resource")
        lease_ref = args.lease or f"{os.environ.get('POD_NAMESPACE') or 'default'}/{DEFAULT_LEASE_NAME}"
        try:
            lease_ns, lease_name = parse_ref(lease_ref)
        except BeatConfigError as exc:
            raise _usage(str(exc).replace("--from-resource", "--lease")) from exc
        schedule_key = f"{lease_ns}/{lease_name}"
        timings = _timings(app, args, None)
        source, timings_from_spec = StaticSource(spec), False
        if args.standalone:
            store = MemoryStore()
        else:
            lease_client = KubeLeaseClient(_kube_client(), lease_ns, lease_name, min(5.0, timings.renew_deadline_s))
            elector = LeaderElector(lease_client, identity, timings)
            store = LeaseAnnotationStore(elector)
    service = BeatService(source=source, publisher=Publisher(app, schedule_key, queues), store=store,
                          identity=identity, timings=timings, elector=elector, timings_from_spec=timings_from_spec)

    def on_signal(signum: int, _frame: Any) -> None:
        logging.getLogger(__name__).info("signal %s: releasing the Lease and stopping", signal.Signals(signum).name)
        service.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    lease = "standalone (no Lease)" if elector is None else f"Lease {lease_ref_text(elector)}"
    logging.getLogger(__name__).info("celeriac beat %s starting: schedule %s, %s", identity, schedule_key, lease)
    try:
        service.run()
    finally:
        stop.set()
        app.close()
    return 0


def lease_ref_text(elector: LeaderElector) -> str:
    client = elector.client
    return f"{client.namespace}/{client.name}" if isinstance(client, KubeLeaseClient) else "(custom)"

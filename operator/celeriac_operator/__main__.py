"""``python -m celeriac_operator``: run the operator (kopf) with peering, a liveness endpoint and settings.

Exactly one of ``--namespace NS`` (repeatable) or ``--all-namespaces`` chooses what is watched (or the
``CELERIAC_OPERATOR_NAMESPACES`` / ``..._ALL_NAMESPACES`` variables). Two replicas started with the same
peering name form an active/standby pair: kopf's peering keeps one of them active and pauses the other
(``--standalone`` skips peering, for one replica, development and tests).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from celeriac_operator.errors import SettingsError
from celeriac_operator.settings import LOG_FORMATS, Settings

log = logging.getLogger("celeriac_operator")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m celeriac_operator", description=__doc__.splitlines()[0])
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", dest="namespaces", metavar="NS",
                       help="watch this namespace (repeatable)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", default=None,
                       help="watch every namespace (needs the ClusterRole)")
    parser.add_argument("--standalone", action="store_true", default=None,
                        help="no peering: this replica is always active")
    parser.add_argument("--peering", dest="peering_name", help="KopfPeering / ClusterKopfPeering name")
    parser.add_argument("--priority", type=int, help="peering priority; the highest is active")
    parser.add_argument("--liveness-port", type=int, help="port of GET /healthz (0 disables it)")
    parser.add_argument("--log-format", choices=LOG_FORMATS)
    parser.add_argument("--verbose", "-v", action="store_true", default=None)
    return parser.parse_args(argv)


def load_settings(args: argparse.Namespace) -> Settings:
    """Environment first, flags over it; exactly one watch scope."""
    settings = Settings.from_env().with_overrides(
        namespaces=tuple(args.namespaces) if args.namespaces else None,
        all_namespaces=args.all_namespaces,
        standalone=args.standalone,
        peering_name=args.peering_name,
        priority=args.priority,
        liveness_port=args.liveness_port,
        log_format=args.log_format,
        verbose=args.verbose,
    )
    if args.namespaces:
        settings = settings.with_overrides(all_namespaces=False)
    if settings.all_namespaces == bool(settings.namespaces):
        raise SettingsError(
            "choose what to watch: --namespace NS (repeatable) or --all-namespaces "
            "(or CELERIAC_OPERATOR_NAMESPACES / CELERIAC_OPERATOR_ALL_NAMESPACES=true)"
        )
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings(parse_args(argv))
    except SettingsError as exc:
        print(f"celeriac-operator: {exc}", file=sys.stderr)
        return 2

    import kopf

    from celeriac_operator.handlers import register
    from celeriac_operator.kube import Kube

    kopf.configure(
        verbose=settings.verbose,
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
    )
    registry = kopf.OperatorRegistry()
    kube = Kube.from_environment()
    register(registry, settings, kube)

    log.info("celeriac-operator starting: %s", "all namespaces" if settings.all_namespaces
             else "namespaces " + ", ".join(settings.namespaces))
    kopf.run(
        registry=registry,
        standalone=settings.standalone,
        priority=settings.effective_priority(time.time()),
        peering_name=None if settings.standalone else settings.peering_name,
        liveness_endpoint=settings.liveness_endpoint,
        clusterwide=settings.all_namespaces,
        namespaces=settings.namespaces,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

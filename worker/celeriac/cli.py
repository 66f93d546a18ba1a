"""The ``celeriac`` command: run a worker, send a task, read a result, inspect workers, manage queues.

Every subcommand takes ``-A module[:attr]`` (the app, found like Celery's ``-A``) and
``--broker URL`` (overrides the app's ``broker_url`` and env ``CELERIAC_BROKER_URL``).
Without ``-A`` a bare app is used, configured from the environment. Bad input prints one
clear line to stderr and exits non-zero; it never prints a traceback.

Exit codes: 0 success, 1 the operation failed (task failed, no worker answered, ...),
2 bad usage or configuration, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from celeriac import cli_schedule, keys
from celeriac.beat import command as beat_command
from celeriac.exceptions import FatalError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(FatalError):
    """Bad command-line input or configuration; the message says how to fix it."""


def load_app(spec: str | None) -> Any:
    """The app named by ``module[:attr]``, like Celery's ``-A``.

    ``module:attr`` takes that attribute (dotted paths allowed); a bare ``module`` takes its
    ``app`` or ``celery`` attribute, else its only Celeriac instance.
    """
    from celeriac.app import Celeriac

    if not spec:
        return Celeriac("celeriac")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like Celery: `-A proj` finds ./proj.py
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import app module {module_name!r} from -A {spec!r}: {exc}") from exc
    if attr:
        found: Any = module
        for part in attr.split("."):
            if not hasattr(found, part):
                raise UsageError(f"module {module_name!r} has no attribute {attr!r} (from -A {spec!r})")
            found = getattr(found, part)
        return found
    for name in ("app", "celery"):
        candidate = getattr(module, name, None)
        if isinstance(candidate, Celeriac):
            return candidate
    instances = {id(value): value for value in vars(module).values() if isinstance(value, Celeriac)}
    if len(instances) == 1:
        return next(iter(instances.values()))
    raise UsageError(
        f"no app found in module {module_name!r}: name it with -A {module_name}:<attribute>"
        if not instances else f"module {module_name!r} holds {len(instances)} apps; pick one with -A module:attr"
    )


def _json_arg(text: str, what: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON ({exc}): {text!r}") from exc
    if not isinstance(value, kind):
        raise UsageError(f"{what} must be a JSON {'array' if kind is list else 'object'}, got {text!r}")
    return value


def _queues(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=repr))


# -- subcommands -------------------------------------------------------------------------------

def cmd_worker(app: Any, args: argparse.Namespace) -> int:
    try:
        from celeriac.worker import Worker, WorkerOptions
    except ImportError as exc:
        raise UsageError(f"the worker engine is not available in this installation: {exc}") from exc
    logging.basicConfig(level=args.loglevel.upper(), format="[%(asctime)s %(levelname)s %(name)s] %(message)s")
    settings: dict[str, Any] = {
        "queues": tuple(_queues(args.queues)), "pool": args.pool, "loglevel": args.loglevel.upper(),
        "events": args.events, "health_port": args.health_port, "burst": args.burst,
        "prefetch_multiplier": args.prefetch_multiplier, "max_tasks_per_child": args.max_tasks_per_child,
        "mingle": args.mingle, "concurrency": args.concurrency, "shutdown_timeout_s": args.shutdown_timeout,
    }
    optional = {"hostname": args.hostname, "pod_name": os.environ.get("POD_NAME")}
    settings.update({name: value for name, value in optional.items() if value is not None})
    try:
        options = WorkerOptions.from_conf(app.conf, **settings)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    return int(Worker(app, options).run())


def cmd_call(app: Any, args: argparse.Namespace) -> int:
    task_args = _json_arg(args.args, "--args", list)
    task_kwargs = _json_arg(args.kwargs, "--kwargs", dict)
    result = app.send_task(args.task, task_args, task_kwargs, queue=args.queue, countdown=args.countdown)
    if not args.wait:
        print(result.id)
        return EXIT_OK
    from celeriac.exceptions import TimeoutError as ResultTimeout

    try:
        meta = app.backend.wait_for(result.id, args.timeout)
    except ResultTimeout:
        print(f"celeriac: task {result.id} did not finish within {args.timeout}s", file=sys.stderr)
        return EXIT_FAILED
    _print_json(_result_doc(result.id, meta))
    return EXIT_OK if meta.get("status") == "SUCCESS" else EXIT_FAILED


def _result_doc(task_id: str, meta: dict[str, Any]) -> dict[str, Any]:
    return {"id": task_id, "state": meta.get("status", "PENDING"), "result": meta.get("result"),
            "traceback": meta.get("traceback"), "date_done": meta.get("date_done")}


def cmd_result(app: Any, args: argparse.Namespace) -> int:
    _print_json(_result_doc(args.task_id, app.backend.get_meta(args.task_id)))
    return EXIT_OK


def cmd_purge(app: Any, args: argparse.Namespace) -> int:
    queues = _queues(args.queues)
    if not queues:
        raise UsageError("purge needs -Q QUEUE[,QUEUE...]")
    if not args.force:
        if not sys.stdin.isatty():
            raise UsageError("purge deletes messages for good; pass -f to confirm when not on a terminal")
        answer = input(f"Delete every message in {', '.join(queues)}? [y/N] ")
        if answer.strip().lower() not in {"y", "yes"}:
            print("nothing purged")
            return EXIT_FAILED
    for queue in queues:
        print(f"purged {app.broker.purge(queue)} message(s) from {queue}")
    return EXIT_OK


def cmd_inspect(app: Any, args: argparse.Namespace) -> int:
    from celeriac.worker.control import broadcast

    destination = _queues(args.destination) or None
    replies = broadcast(app, args.method, {}, destination=destination, timeout_s=args.timeout)
    if not replies:
        print(f"celeriac: no worker replied within {args.timeout}s", file=sys.stderr)
        return EXIT_FAILED
    merged: dict[str, Any] = {}
    for reply in replies:
        merged.update(reply)
    _print_json(merged)
    return EXIT_OK


# Atomic move of one dead-lettered envelope: only the process that removes it pushes it.
_MOVE_SCRIPT = """
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

_DEAD_LETTER_HEADERS = ("x-celeriac-dead-letter-reason", "x-celeriac-dead-letter-queue",
                        "x-celeriac-dead-letter-time")


def _dead_letters(app: Any, queue: str) -> tuple[Any, str, str, list[bytes]]:
    """``(redis client, prefix, dead-letter list key, envelopes oldest first)``."""
    import redis

    url = str(app.conf.broker_url)
    if not url.startswith(("redis://", "rediss://")):
        raise UsageError(f"dlq works with a Redis broker only; broker_url is {url.split(':', 1)[0]}://...")
    options = app.conf.broker_transport_options or {}
    prefix = str(options.get("global_keyprefix") or "")
    suffix = str(options.get("dead_letter_suffix") or keys.DEAD_LETTER_SUFFIX)
    client = redis.Redis.from_url(url)
    dead_key = keys.queue_list(f"{queue}{suffix}", 0, prefix)
    return client, prefix, dead_key, list(reversed(client.lrange(dead_key, 0, -1)))


def _envelope(raw: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("headers"), dict) else None


def cmd_dlq(app: Any, args: argparse.Namespace) -> int:
    client, prefix, dead_key, envelopes = _dead_letters(app, args.queue)
    if args.action == "list":
        for raw in envelopes[: args.limit]:
            doc = _envelope(raw) or {"headers": {}, "properties": {}}
            headers = doc["headers"]
            print(json.dumps({
                "id": headers.get("id"), "task": headers.get("task"),
                "reason": headers.get("x-celeriac-dead-letter-reason"),
                "queue": headers.get("x-celeriac-dead-letter-queue"),
                "dead_lettered_at": headers.get("x-celeriac-dead-letter-time"),
                "delivery_tag": (doc.get("properties") or {}).get("delivery_tag"),
            }))
        print(f"{min(len(envelopes), args.limit)} of {len(envelopes)} dead-lettered message(s) in {args.queue}",
              file=sys.stderr)
        return EXIT_OK
    move = client.register_script(_MOVE_SCRIPT)
    moved = skipped = 0
    for raw in envelopes:
        if args.count is not None and moved >= args.count:
            break
        found = _envelope(raw)
        if found is None or not found.get("properties"):
            skipped += 1  # not a message envelope (kept for inspection)
            continue
        doc = found
        origin = str(doc["headers"].get("x-celeriac-dead-letter-queue") or args.queue)
        for name in _DEAD_LETTER_HEADERS:
            doc["headers"].pop(name, None)
        target = keys.queue_list(origin, doc["properties"].get("priority", 0), prefix)
        moved += int(move(keys=[dead_key, target], args=[raw, json.dumps(doc)]))
    note = f"; {skipped} left in place (not message envelopes)" if skipped else ""
    print(f"requeued {moved} message(s) from {dead_key}{note}")
    return EXIT_OK


# -- parser ------------------------------------------------------------------------------------

def _health_port(text: str) -> int | None:
    if text.lower() in {"off", "none"}:
        return None
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number or 'off': {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {port}")
    return port


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-A", "--app", default=argparse.SUPPRESS, help="the app, module[:attr]")
    common.add_argument("-b", "--broker", default=argparse.SUPPRESS,
                        help="broker URL (overrides the app and env CELERIAC_BROKER_URL)")
    parser = argparse.ArgumentParser(prog="celeriac", parents=[common],
                                     description="Celeriac: a Celery-compatible task queue.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = commands.add_parser("worker", parents=[common], help="run a worker")
    worker.add_argument("-Q", "--queues", help="comma-separated queues (default: the app's default queue)")
    worker.add_argument("-c", "--concurrency", type=int, help="pool size (default: CPU count)")
    worker.add_argument("-P", "--pool", choices=["prefork", "threads", "solo"], default="prefork")
    worker.add_argument("--prefetch-multiplier", type=int, help="messages held per pool slot")
    worker.add_argument("-l", "--loglevel", default="info",
                        choices=["debug", "info", "warning", "error", "critical"], type=str.lower)
    worker.add_argument("-E", "--events", action="store_true", default=None,
                        help="send Celery task events (default: worker_send_task_events)")
    worker.add_argument("--health-port", type=_health_port, default=9808,
                        help="/livez /readyz /metrics port; 0 = any free port, off = none (default 9808)")
    worker.add_argument("-n", "--hostname", help="node name (default celeriac@$POD_NAME or host)")
    worker.add_argument("--max-tasks-per-child", type=int, help="replace a prefork child after N tasks")
    worker.add_argument("--shutdown-timeout", type=float, help="warm shutdown deadline in seconds (25)")
    worker.add_argument("--burst", action="store_true", help="exit once the queues are drained")
    worker.add_argument("--mingle", dest="mingle", action="store_true", default=False,
                        help="at start, learn revoked task ids from the other workers (Celery's mingle)")
    worker.add_argument("--without-mingle", dest="mingle", action="store_false", help="do not mingle (default)")
    worker.set_defaults(handler=cmd_worker)

    call = commands.add_parser("call", parents=[common], help="send a task by name")
    call.add_argument("task")
    call.add_argument("--args", default="[]", help="positional arguments as a JSON array")
    call.add_argument("--kwargs", default="{}", help="keyword arguments as a JSON object")
    call.add_argument("-Q", "--queue", help="queue (default: the app's routing)")
    call.add_argument("--countdown", type=float, help="run no earlier than this many seconds from now")
    call.add_argument("--wait", action="store_true", help="wait for and print the result")
    call.add_argument("--timeout", type=float, default=60.0, help="seconds --wait waits (60)")
    call.set_defaults(handler=cmd_call)

    result = commands.add_parser("result", parents=[common], help="print a task's state and result")
    result.add_argument("task_id")
    result.set_defaults(handler=cmd_result)

    purge = commands.add_parser("purge", parents=[common], help="delete every message of queues")
    purge.add_argument("-Q", "--queues", required=True, help="comma-separated queues")
    purge.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(handler=cmd_purge)

    inspect = commands.add_parser("inspect", parents=[common], help="ask running workers")
    inspect.add_argument(
        "method", choices=["ping", "active", "reserved", "scheduled", "revoked", "stats", "registered"]
    )
    inspect.add_argument("-t", "--timeout", type=float, default=1.0, help="seconds to wait for replies (1)")
    inspect.add_argument("-d", "--destination", help="comma-separated node names")
    inspect.set_defaults(handler=cmd_inspect)

    dlq = commands.add_parser("dlq", parents=[common], help="dead-lettered messages")
    dlq.add_argument("action", choices=["list", "requeue"])
    dlq.add_argument("-Q", "--queue", required=True, help="the queue whose dead letters to use")
    dlq.add_argument("--limit", type=int, default=100, help="list at most N, oldest first (100)")
    dlq.add_argument("--count", type=int, help="requeue at most N, oldest first (default: all)")
    dlq.set_defaults(handler=cmd_dlq)

    beat_command.add_parser(commands, common)
    cli_schedule.add_parser(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    import redis

    from celeriac.exceptions import CeleriacError

    args = build_parser().parse_args(argv)
    broker = getattr(args, "broker", None)
    if broker:
        os.environ["CELERIAC_BROKER_URL"] = broker  # env overrides app conf, also in pool children
    handler: Callable[[Any, argparse.Namespace], int] = args.handler
    try:
        app = load_app(getattr(args, "app", None))
        if broker:
            app.conf.broker_url = broker
        return handler(app, args)
    except UsageError as exc:
        print(f"celeriac: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (CeleriacError, redis.RedisError, OSError) as exc:
        print(f"celeriac: {args.command} failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED

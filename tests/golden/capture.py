"""Regenerate the golden Celery messages: ``.venv/bin/python tests/golden/capture.py``.

Starts a throwaway redis-server, makes each call in ``cases.CASES`` with Celery's own
client, reads the Redis list element kombu wrote, and stores it (body decoded, run-
dependent values normalised) in ``celery-5.7-messages.json``. Then runs a real Celery
worker to capture what it writes: result documents (SUCCESS, FAILURE, RETRY) and the
message it republishes on retry.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
OUTPUT = HERE / "celery-5.7-messages.json"


def _envelope_record(raw: bytes, list_key: str) -> dict[str, Any]:
    from golden.cases import body_record, normalise_envelope

    envelope = json.loads(raw)
    body = base64.b64decode(envelope.pop("body"))
    return {"list_key": list_key, "envelope": normalise_envelope(envelope), **body_record(body, envelope["headers"])}


def _only_message(client: Any) -> dict[str, Any]:
    lists = [key for key in client.keys("*") if client.type(key) == b"list"]
    if len(lists) != 1 or client.llen(lists[0]) != 1:
        raise RuntimeError(f"expected exactly one message in one list, found {lists}")
    return _envelope_record(client.lindex(lists[0], 0), lists[0].decode("utf-8"))


def capture_client(url: str, client: Any) -> dict[str, Any]:
    from celery import Celery, signature

    from golden.cases import CASES, NORMALISED_TIME, SEND_TASK_UNREGISTERED, task_id
    from golden.celery_tasks import app

    records: dict[str, Any] = {}
    for name, (task_name, args, kwargs, case_options) in CASES.items():
        client.flushdb()
        options = dict(case_options)
        for key in ("link", "link_error"):
            if key in options:
                options[key] = signature(options[key], app=app)
        app.tasks[task_name].apply_async(args, kwargs, **options)
        records[name] = _only_message(client)
    client.flushdb()
    task_name, args, kwargs, options = SEND_TASK_UNREGISTERED
    app.send_task(task_name, args, kwargs, **options)
    records["send_task_unregistered"] = _only_message(client)
    client.flushdb()
    old_format = Celery("v1", broker=url)
    old_format.conf.task_protocol = 1  # Celery still accepts protocol 1, so must we
    old_format.send_task("golden.add", (2, 3), {"z": 1}, task_id=task_id(91), countdown=30)
    old_format.close()
    v1 = _only_message(client)
    body = json.loads(v1["body"])
    body["eta"] = NORMALISED_TIME
    v1["body"] = json.dumps(body)  # the same separators kombu uses
    records["protocol_v1"] = v1
    client.flushdb()
    return records


def _start_celery_worker(url: str, **extra_env: str) -> subprocess.Popen[bytes]:
    """A real Celery worker running ``golden.celery_tasks`` on ``url``; the caller kills its group."""
    env = {**os.environ, "GOLDEN_REDIS_URL": url, "PYTHONPATH": str(TESTS), **extra_env}
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "celery"), "-A", "golden.celery_tasks", "worker", "-P", "solo",
         "-c", "1", "--without-heartbeat", "--without-mingle", "--without-gossip", "-l", "warning"],
        cwd=TESTS, env=env, start_new_session=True,
    )  # fmt: skip


def capture_worker(url: str, client: Any) -> dict[str, Any]:
    from celery import Celery

    from golden.cases import NORMALISED, normalise_envelope, task_id
    from servers import wait_until

    worker = _start_celery_worker(url)
    app = Celery("capture", broker=url, backend=url)
    ids = {"success": task_id(101), "failure": task_id(102), "retry": task_id(103)}
    try:
        app.send_task("golden.add", (2, 3), task_id=ids["success"])
        app.send_task("golden.fail", ("boom",), task_id=ids["failure"])
        app.send_task("golden.retry_once", (7,), task_id=ids["retry"])

        def stored(name: str, state: str) -> bool:
            raw = client.get(f"celery-task-meta-{ids[name]}")
            return raw is not None and json.loads(raw)["status"] == state

        for name, state in (("success", "SUCCESS"), ("failure", "FAILURE"), ("retry", "RETRY")):
            wait_until(lambda n=name, s=state: stored(n, s), 60, f"celery worker to store {state}")
        wait_until(lambda: client.hlen("unacked") == 1, 30, "the retried message held unacked (ETA)")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    records: dict[str, Any] = {}
    for name, tid in ids.items():
        meta = json.loads(client.get(f"celery-task-meta-{tid}"))
        meta["date_done"] = NORMALISED if meta["date_done"] is not None else None
        meta["traceback"] = NORMALISED if meta["traceback"] is not None else None
        records[f"result_{name}"] = meta
    (tag,) = client.hkeys("unacked")
    envelope, exchange, routing_key = json.loads(client.hget("unacked", tag))
    body = base64.b64decode(envelope.pop("body")).decode("utf-8")
    records["worker_retry"] = {
        "list_key": routing_key,
        "exchange": exchange,
        "envelope": normalise_envelope(envelope),
        "body": body,
    }
    return records


def capture_extended(url: str, client: Any) -> dict[str, Any]:
    """A result stored with ``result_extended`` (name, args, kwargs, worker, retries, queue)."""
    from celery import Celery

    from golden.cases import NORMALISED, task_id
    from servers import wait_until

    worker = _start_celery_worker(url, GOLDEN_RESULT_EXTENDED="1")
    app = Celery("capture", broker=url, backend=url)
    key = f"celery-task-meta-{task_id(104)}"
    try:
        app.send_task("golden.add", (2, 3), {"z": 1}, task_id=task_id(104))
        wait_until(lambda: client.get(key) is not None, 60, "celery worker to store the extended result")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    meta = json.loads(client.get(key))
    meta["date_done"] = NORMALISED
    meta["worker"] = NORMALISED
    return {"result_extended": meta}


def main() -> None:
    sys.path.insert(0, str(TESTS))
    from servers import start_redis

    with tempfile.TemporaryDirectory() as directory:
        server = start_redis(Path(directory))
        try:
            os.environ["GOLDEN_REDIS_URL"] = server.url
            client = server.client()
            records = {
                "client": capture_client(server.url, client),
                "worker": {**capture_worker(server.url, client), **capture_extended(server.url, client)},
            }
        finally:
            server.stop()
    OUTPUT.write_text(json.dumps(records, indent=2, sort_keys=False, ensure_ascii=True) + "\n")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()

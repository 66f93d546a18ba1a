"""The benchmark task, defined once for both frameworks under the same name.

``BENCH_IMPL=celery`` builds a real Celery 5.7 app, anything else a Celeriac app, so
``celery -A bench_tasks worker`` and ``celeriac worker -A bench_tasks`` run the very same
function body. ``BENCH_ACKS_LATE=1`` turns on ``task_acks_late`` for the late-ack variant.
Only the chosen framework is imported, so neither worker pays for the other's imports.
"""

from __future__ import annotations

import os
from typing import Any

URL = os.environ["BENCH_REDIS_URL"]
IMPL = os.environ.get("BENCH_IMPL", "celeriac")

app: Any
if IMPL == "celery":
    from celery import Celery

    app = Celery("bench", broker=URL, backend=URL)
else:
    from celeriac import Celeriac

    app = Celeriac("bench", broker=URL, backend=URL)

app.conf.task_acks_late = os.environ.get("BENCH_ACKS_LATE") == "1"


@app.task(name="bench.add")
def add(x: int, y: int) -> int:
    return x + y

"""Celery's own EventReceiver on a thread, started before the events it must see are sent."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from celery import Celery


def start_event_capture(app: Celery, on_event: Callable[[dict[str, Any]], None], holder: dict[str, Any],
                        timeout_s: float) -> threading.Thread:
    """Capture every event on a daemon thread; return once the receiver consumes, so none is missed.

    ``holder["receiver"]`` is the receiver: ``on_event`` (or a test's cleanup) sets its ``should_stop``.
    """
    ready = threading.Event()

    def capture() -> None:
        with app.connection() as conn:
            receiver = app.events.Receiver(conn, handlers={"*": on_event})
            holder["receiver"] = receiver
            original = receiver.on_consume_ready

            def on_ready(*args: Any, **kwargs: Any) -> None:
                original(*args, **kwargs)
                ready.set()

            receiver.on_consume_ready = on_ready
            receiver.capture(limit=None, timeout=timeout_s, wakeup=False)

    thread = threading.Thread(target=capture, daemon=True)
    thread.start()
    assert ready.wait(timeout=timeout_s), "Celery's receiver never started consuming"
    return thread

"""Celery remote control over an AMQP broker (RabbitMQ): the worker-side responder and the client.

Both use kombu's Mailbox with Celery's settings (wire-protocol §4.1): commands on the fanout
exchange ``celery.pidbox``, each node consuming its own queue ``<node>.celery.pidbox``
(exclusive, x-expires 10 s, message TTL 300 s), replies through the direct exchange
``reply.celery.pidbox``. What a node answers is :class:`~celeriac.worker.control.ControlCommands`',
shared with the Redis responder.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import kombu as _kombu
from kombu import pidbox as _pidbox

from celeriac.worker.control import COMMANDS, ControlCommands, Terminate
from celeriac.worker.state import WorkerState

log = logging.getLogger(__name__)

kombu: Any = _kombu  # kombu's partial annotations would make every call untyped under --strict
Mailbox: Any = _pidbox.Mailbox


class AmqpControlResponder:
    """Answers pidbox commands over an AMQP broker (RabbitMQ) until stopped.

    Uses kombu's Mailbox like Celery does (fanout exchange ``celery.pidbox``, node queue
    ``<node>.celery.pidbox`` exclusive with x-expires 10 s and message TTL 300 s, replies on
    ``reply.celery.pidbox``), reconnecting with backoff when the connection drops.
    """

    def __init__(
        self,
        url: str,
        state: WorkerState,
        *,
        transport_options: dict[str, Any] | None = None,
        terminate: Terminate | None = None,
        mark_revoked: Callable[[list[str]], None] | None = None,
        task_names: Callable[[], list[str]] | None = None,
        poll_interval_s: float = 0.5,
    ) -> None:
        self.url = url
        self.transport_options = dict(transport_options or {})
        self.state = state
        self.hostname = state.hostname
        self.commands = ControlCommands(
            state, terminate=terminate, mark_revoked=mark_revoked, task_names=task_names, transport="amqp"
        )
        self.poll_interval_s = poll_interval_s
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Consume in a daemon thread; returns once the node queue is consumed."""
        self._stop.clear()
        self._subscribed.clear()
        self._thread = threading.Thread(target=self._run, name="celeriac-control", daemon=True)
        self._thread.start()
        self._subscribed.wait(timeout=20.0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def mingle(self, timeout_s: float = 1.0) -> int:
        """Celery's startup sync over AMQP: as :meth:`celeriac.worker.control.ControlResponder.mingle`."""
        replies = broadcast_amqp(self.url, self.transport_options, "hello", self.commands.hello_arguments(),
                                 destination=None, timeout_s=timeout_s, limit=None, reply=True)  # fmt: skip
        return self.commands.merge_hello_replies(replies)

    def _handlers(self) -> dict[str, Callable[..., Any]]:
        def handler(method: str) -> Callable[..., Any]:
            return lambda _state, **arguments: self.commands.dispatch(method, arguments)

        return {method: handler(method) for method in COMMANDS}

    def _run(self) -> None:
        backoff_s = 0.1
        while not self._stop.is_set():
            conn: Any = kombu.Connection(self.url, transport_options=self.transport_options)
            try:
                mailbox: Any = Mailbox(
                    "celery", type="fanout", accept=["json"], serializer="json", clock=self.commands.clock,
                    queue_ttl=300.0, queue_expires=10.0, reply_queue_ttl=300.0, reply_queue_expires=10.0,
                )
                node = mailbox(conn).Node(self.hostname, handlers=self._handlers(), channel=conn.channel())
                node.listen()
                self._subscribed.set()
                backoff_s = 0.1
                while not self._stop.is_set():
                    try:
                        conn.drain_events(timeout=self.poll_interval_s)
                    except TimeoutError:  # socket.timeout: no command in this slice
                        continue
            except Exception as exc:  # kombu's connection errors differ per transport
                log.warning("remote control connection lost (retrying in %.1fs): %s", backoff_s, exc)
                self._stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
            finally:
                conn.release()


def broadcast_amqp(
    url: str, transport_options: dict[str, Any] | None, method: str, arguments: dict[str, Any] | None, *,
    destination: list[str] | None, timeout_s: float, limit: int | None, reply: bool,
) -> list[dict[str, Any]]:
    """Send a remote control command over AMQP (kombu's Mailbox with Celery's settings); the replies.

    Arguments as :func:`celeriac.worker.control.broadcast`'s, which calls this for AMQP URLs.
    """
    mailbox: Any = Mailbox("celery", type="fanout", accept=["json"], serializer="json",
                           reply_queue_ttl=300.0, reply_queue_expires=10.0)
    conn: Any = kombu.Connection(url, transport_options=dict(transport_options or {}))
    try:
        bound = mailbox(conn)
        if not reply:
            if destination:
                bound.cast(destination, method, arguments or {})
            else:
                bound.abcast(method, arguments or {})
            return []
        if destination:
            replies = bound.call(destination, method, arguments or {}, timeout=timeout_s)
        else:
            replies = bound.multi_call(method, arguments or {}, timeout=timeout_s, limit=limit)
        return [dict(item) for item in replies or []]
    finally:
        conn.release()


__all__ = ["AmqpControlResponder", "broadcast_amqp"]

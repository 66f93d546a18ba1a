"""Broker writes (acks, requeues, republishes, dead letters) on their own thread.

The engine hands over whatever it collected in a loop iteration and goes on; this thread
sends everything that piled up since its previous round trip in one call per kind. Under
load the batches grow by themselves (while one ack round trip is in flight the next
acks accumulate), and a busy engine never waits on the network. An engine going idle with
nothing waiting to start sends its last writes itself when this thread has nothing to do
(:meth:`BrokerWriter.send_now`): a lone result reaches Redis without waking another thread.

Deferred task outcomes (:attr:`~.jobs.JobResult.outcome`) are applied first, all their
result writes in one pipeline (plain results prepared by the pool, consecutive in the batch,
in one script call), so a late ack never precedes its result. When the broker and
the result backend are the same Redis server and database, the batch's acks ride at the end
of that pipeline: one round trip for results and acks.

A write that fails for a lost connection is kept and retried after a short pause; the
``unacked`` entry in Redis (or the AMQP channel) keeps the message safe meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celeriac.brokers import Broker, BrokerConnectionError, Delivery
from celeriac.worker.jobs import Job, JobResult, apply_result

log = logging.getLogger(__name__)

RETRY_PAUSE_S = 0.2


@dataclass
class Writes:
    acks: list[Delivery] = field(default_factory=list)
    requeues: list[Delivery] = field(default_factory=list)
    republishes: list[Delivery] = field(default_factory=list)
    dead: list[tuple[Delivery, str]] = field(default_factory=list)
    results: list[tuple[Job, JobResult]] = field(default_factory=list)
    """Deferred outcomes to apply (follow-ups published, results stored) before any ack."""

    def __bool__(self) -> bool:
        return bool(self.acks or self.requeues or self.republishes or self.dead or self.results)

    def __len__(self) -> int:
        return len(self.acks) + len(self.requeues) + len(self.republishes) + len(self.dead) + len(self.results)

    def extend(self, other: Writes) -> None:
        self.results.extend(other.results)
        self.acks.extend(other.acks)
        self.requeues.extend(other.requeues)
        self.republishes.extend(other.republishes)
        self.dead.extend(other.dead)


class BrokerWriter:
    """Sends :class:`Writes` in batches from a background thread; ``stop()`` drains first."""

    def __init__(self, broker: Broker, app: Any) -> None:
        self.broker = broker
        self.app = app
        self._pending = Writes()
        self._queue_ack: Callable[[Any, list[str]], None] | None = None
        """The broker's ``queue_ack`` when acks can ride in the result pipeline (set by :meth:`start`)."""
        self._cond = threading.Condition()
        self._sending = threading.Lock()
        """Held by whichever thread sends a batch, so batches leave one at a time, in order."""
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        shares = getattr(self.broker, "shares_server", None)
        client = getattr(self.app.backend, "client", None)
        if shares is not None and client is not None and shares(client):  # the same Redis server and db
            self._queue_ack = self.broker.queue_ack  # type: ignore[attr-defined]  # a RedisBroker
        self._thread = threading.Thread(target=self._run, name="celeriac-acks", daemon=True)
        self._thread.start()

    def submit(self, writes: Writes) -> None:
        if not writes:
            return
        with self._cond:
            self._pending.extend(writes)
            self._cond.notify()

    def send_now(self, writes: Writes) -> None:
        """Send ``writes`` on the calling thread if this writer is idle (nothing pending, nothing
        in flight), else queue them behind what is; what cannot be sent is queued for retries."""
        if not writes:
            return
        with self._cond:
            idle = not self._pending and self._sending.acquire(blocking=False)
        if not idle:
            self.submit(writes)
            return
        try:
            left = self._send(writes)
        finally:
            self._sending.release()
        self.submit(left)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Send what is pending (retrying for up to ``timeout_s``), then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("broker writes still pending at exit; unacked messages will be restored by a sweep")

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending and self._stopping:
                    return
                batch, self._pending = self._pending, Writes()
                self._sending.acquire()
            try:
                left = self._send(batch)
            finally:
                self._sending.release()
            if left:
                with self._cond:
                    left.extend(self._pending)
                    self._pending = left
                    self._cond.wait(RETRY_PAUSE_S)

    def _send(self, batch: Writes) -> Writes:
        """Send ``batch``; return what could not be sent (connection lost)."""
        if batch.results:
            if self._apply(batch.results, batch.acks if self._queue_ack is not None else []):
                batch.acks = []
            batch.results = []
        try:
            if batch.acks:
                self.broker.ack(batch.acks)
                batch.acks = []
            if batch.requeues:
                self.broker.requeue(batch.requeues)
                batch.requeues = []
            if batch.republishes:
                self.broker.republish(batch.republishes)
                batch.republishes = []
            while batch.dead:
                delivery, reason = batch.dead[0]
                self.broker.reject_to_dead_letter(delivery, reason)
                batch.dead.pop(0)
        except BrokerConnectionError as exc:
            log.warning("broker writes postponed: %s", exc)
        except Exception:  # never lose the thread: log, drop nothing, retry later
            log.exception("broker write failed; retrying")
        return batch

    def _store_prepared(self, prepared: list[Any], pipe: Any) -> None:
        if prepared:
            self.app.backend.store_prepared(prepared, pipe)
            prepared.clear()

    def _apply(self, results: list[tuple[Job, JobResult]], acks: list[Delivery]) -> bool:
        """Apply outcomes with every result write, then ``acks``, in one pipeline (one round trip).

        Results are not retried: follow-ups are published as each outcome is applied, and a
        retry would publish them twice; a failure is logged with the task ids whose results are
        missing. Returns True when ``acks`` were sent (else the caller sends them on its own).
        """
        pipe = self.app.backend.client.pipeline(transaction=False)
        prepared: list[Any] = []  # consecutive plain results: one script call stores them all
        for job, result in results:
            if result.prepared is not None:
                prepared.append(result.prepared)
                continue
            self._store_prepared(prepared, pipe)
            try:
                apply_result(self.app, job, result, pipe)
            except Exception:
                log.exception("applying the outcome of %s[%s] failed", job.request.task, job.task_id)
        self._store_prepared(prepared, pipe)
        tags = [d.delivery_tag for d in acks]
        result_commands = len(pipe)
        if tags and self._queue_ack is not None:  # the caller passes acks only when it is set
            self._queue_ack(pipe, tags)
        try:
            replies = pipe.execute(raise_on_error=False)
        except Exception as exc:
            log.error("could not store results of %s: %s", ", ".join(job.task_id for job, _ in results), exc)
            return False
        ack_replies = replies[result_commands:]
        failed = [r for r in replies[:result_commands] if isinstance(r, Exception)]
        if failed:
            log.error("could not store results of %s: %s", ", ".join(job.task_id for job, _ in results), failed[0])
        return bool(tags) and not any(isinstance(r, Exception) for r in ack_replies)

"""What the engine does with each message: decode, hold, start, settle.

Every method runs on the engine's loop, except :meth:`Dispatcher.reserve`,
:meth:`Dispatcher.unacked_count` (consumer thread) and :meth:`Dispatcher.mark_revoked`
(control thread). Broker writes are collected per loop iteration and handed by
:meth:`Dispatcher.flush` to a :class:`~.writer.BrokerWriter` thread, which batches them further.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Any

from celeriac import states
from celeriac.brokers import Broker, BrokerConnectionError, Delivery
from celeriac.chord_counter import on_chord_part_return
from celeriac.exceptions import (
    BackendError,
    MalformedMessage,
    NotRegistered,
    TaskRevokedError,
    TimeLimitExceeded,
    WorkerLostError,
)
from celeriac.protocol import SCHEDULED_HEADER, TaskRequest, decode_task_message
from celeriac.worker.jobs import Job, JobResult
from celeriac.worker.options import WorkerOptions
from celeriac.worker.pool import Pool, SoloPool, ThreadPool
from celeriac.worker.prefork import PreforkPool
from celeriac.worker.ratelimit import TokenBucket, parse_rate
from celeriac.worker.state import WorkerState
from celeriac.worker.timers import Timers
from celeriac.worker.writer import BrokerWriter, Writes

log = logging.getLogger(__name__)

REVOKABLE = {states.PENDING, states.RECEIVED, states.RETRY, states.REJECTED}

FLUSH_BATCH = 32
"""Broker writes collected before a busy engine hands them to the writer (it always does before
it sleeps): bigger batches mean fewer writer wake-ups and round trips per message."""

ACK_HOLD_S = 0.002
"""How long an idle loop may keep the early acks of tasks still running when it has nothing else
to write: a short task finishing meanwhile sends its result and those acks in one round trip,
instead of an ack round trip that the result then waits behind."""


@dataclass(eq=False)
class Held:
    """A message this worker holds: waiting (ETA, rate limit, free slot) or running."""

    delivery: Delivery
    request: TaskRequest
    task: Any
    acks_late: bool
    status: str = "waiting"  # waiting | running | done
    acked: bool = False
    kill_reason: str | None = None
    started_s: float = 0.0
    job: Job | None = None

    @cached_property
    def delivery_info(self) -> dict[str, Any]:
        d = self.delivery
        return {"exchange": d.exchange, "routing_key": d.routing_key, "priority": d.priority,
                "redelivered": d.redelivered}


class Dispatcher:
    def __init__(
        self, app: Any, broker: Broker, *, state: WorkerState, pool: Pool, timers: Timers,
        options: WorkerOptions, stop_requested: Callable[[], bool] = lambda: False,
    ) -> None:
        self.app = app
        self.broker = broker
        self.state = state
        self.pool = pool
        self.timers = timers
        self.options = options
        self.stop_requested = stop_requested
        """True once a shutdown was asked for: a ``solo`` run of ready tasks stops there."""
        self._held: dict[Held, None] = {}  # insertion-ordered: arrival order
        self._ready: deque[Held] = deque()
        self._running: dict[str, Held] = {}
        self._count = 0
        self._count_lock = threading.Lock()
        self.writer = BrokerWriter(broker, app)
        self._writes = Writes()
        self._buckets: dict[str, TokenBucket | None] = {}
        self._rate_limits = not app.conf.worker_disable_rate_limits
        """Read once, as Celery's worker does at start."""
        self._declined = False
        self._writes_since_s = 0.0
        """When an early ack was the first write collected (for :meth:`ack_hold_s`)."""

    # -- counting (prefetch window: unacknowledged messages) ------------------------------------

    def reserve(self, n: int) -> None:
        """The consumer took ``n`` messages (called before it posts them)."""
        with self._count_lock:
            self._count += n

    def _release(self) -> None:
        with self._count_lock:
            self._count -= 1

    def unacked_count(self) -> int:
        """Messages taken and not acknowledged yet: the prefetch window's measure, as in kombu's
        QoS (waiting or ETA-held ones, and running ones until their late ack; an early-acked
        running task no longer counts)."""
        with self._count_lock:
            return self._count

    def running_count(self) -> int:
        return len(self._running)

    def starving(self) -> bool:
        """A pool slot is free and nothing is ready to start (read by the consumer thread: a stale
        answer only delays a fetch until the engine's next ``room_changed``)."""
        return not self._ready and self.pool.free_slots() > 0

    def waiting_count(self) -> int:
        return len(self._held) - len(self._running)

    # -- arrival -------------------------------------------------------------------------------

    def accept(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            held = self._decode(delivery)
            if held is None:
                continue
            self._held[held] = None
            self.state.on_received(self._info(held))
            if self.state.is_revoked(held.request.id):
                self._finish_revoked(held, "revoked")
                continue
            delay_s = _seconds_until(held.request.eta)
            if delay_s > 0:
                self.timers.add(delay_s, ("eta", held))
            else:
                self._ready.append(held)

    def _decode(self, delivery: Delivery) -> Held | None:
        if delivery.envelope_error is not None:
            self._dead_letter(delivery, delivery.envelope_error)
            return None
        try:
            request = decode_task_message(delivery.message, self.app.conf.accept)
        except MalformedMessage as exc:
            self._dead_letter(delivery, exc.reason)
            return None
        task = self.app.tasks.get(request.task)
        if task is None:
            self._dead_letter(delivery, f"unknown task {request.task!r}")
            self._store(request, NotRegistered(request.task), states.FAILURE, force=True)
            return None
        acks_late = self.options.acks_late
        if acks_late is None:
            acks_late = bool(task.option("acks_late", "task_acks_late"))
        return Held(delivery, request, task, acks_late)

    def _info(self, held: Held) -> dict[str, Any]:
        r = held.request
        return {
            "id": r.id, "name": r.task, "args": list(r.args), "kwargs": r.kwargs,
            "delivery_info": held.delivery_info, "acknowledged": False, "root_id": r.root_id,
            "parent_id": r.parent_id, "retries": r.retries,
            "eta": r.eta.isoformat() if r.eta else None,
            "expires": r.expires.isoformat() if r.expires else None,
            "argsrepr": r.argsrepr, "kwargsrepr": r.kwargsrepr,
        }

    # -- starting --------------------------------------------------------------------------------

    def runnable(self) -> bool:
        """Something ready can start now (a ``solo`` run stopped early for a shutdown request);
        not while the pool declined the first ready task (it is retried on every loop turn)."""
        return bool(self._ready) and not self._declined and self.pool.free_slots() > 0

    def run_ready(self) -> None:
        self._declined = False
        while self._ready and self.pool.free_slots() > 0:
            held = self._ready.popleft()
            if held.status != "waiting":
                continue
            request = held.request
            if self.state.is_revoked(request.id):
                self._finish_revoked(held, "revoked")
            elif request.expires is not None and _seconds_until(request.expires) <= 0:
                self._finish_revoked(held, "expired")
            elif SCHEDULED_HEADER in request.headers and self._already_succeeded(request):
                self._skip_duplicate(held)
            else:
                wait_s = self._rate_wait(held)
                if wait_s > 0:
                    self.timers.add(wait_s, ("rate", held))
                elif not self._start(held):  # prefork: a hard-limited task waits for an idle process
                    bucket = self._buckets.get(request.task)
                    if bucket is not None and self._rate_limits:
                        bucket.give_back()
                    self._ready.appendleft(held)
                    self._declined = True
                    return
                elif isinstance(self.pool, SoloPool) and held.job is not None:
                    self._run_inline(self.pool, held.job)
                    if self.stop_requested():
                        return

    def _already_succeeded(self, request: TaskRequest) -> bool:
        """A scheduled message (deterministic id) whose id is SUCCESS already: a failover duplicate.

        Only messages carrying the scheduler's header reach here, so ordinary messages cost
        no lookup. A backend error runs the task (a skipped run would be lost for good).
        """
        if not self.app.conf.worker_skip_succeeded_scheduled:
            return False
        try:
            return bool(self.app.backend.get_meta(request.id).get("status") == states.SUCCESS)
        except BackendError as exc:
            log.warning("could not check whether scheduled task %s already ran: %s", request.id, exc)
            return False

    def _skip_duplicate(self, held: Held) -> None:
        request = held.request
        log.info("scheduled task %s[%s] already succeeded (slot %s); acking the duplicate without running it",
                 request.task, request.id, request.headers.get(SCHEDULED_HEADER))
        self.state.metrics.scheduled_duplicates.labels(task=request.task).inc()
        self.state.on_requeued(request.id)  # forget it: neither reserved nor processed any more
        self._settle(held, self._writes.acks)

    def _rate_wait(self, held: Held) -> float:
        if not self._rate_limits:
            return 0.0
        name = held.request.task
        if name not in self._buckets:
            rate = parse_rate(held.task.option("rate_limit", "task_default_rate_limit"))
            self._buckets[name] = TokenBucket(rate) if rate else None
        bucket = self._buckets[name]
        return bucket.take() if bucket is not None else 0.0

    def _start(self, held: Held) -> bool:
        """Hand ``held`` to the pool; False if the pool cannot start it now."""
        request, task = held.request, held.task
        hard = request.time_limit or task.option("time_limit", "task_time_limit")
        soft = request.soft_time_limit or task.option("soft_time_limit", "task_soft_time_limit")
        alone = not self._running and not self._ready and isinstance(self.pool, PreforkPool)
        job = Job(request, held.delivery_info, self.options.hostname, soft, hard, apply_here=alone)
        pid = self.pool.submit(job)
        if pid is None:
            return False
        held.job = job
        held.status = "running"
        held.started_s = time.monotonic()
        self._running[request.id] = held
        self.state.on_started(request.id, pid)
        if not held.acks_late:
            self._ack(held)
        if hard:
            self.timers.add(float(hard), ("hard", held))
        if soft and isinstance(self.pool, ThreadPool):
            self.timers.add(float(soft), ("soft", held))
        return True

    def _run_inline(self, pool: SoloPool, job: Job) -> None:
        """``solo``: run the job on this thread (a long one gets its writes flushed by the pool's watcher)."""
        self.on_done(job, pool.run(job))

    def on_timer(self, payload: Any) -> None:
        kind, held = payload
        if kind == "eta" and held.status == "waiting":
            self._ready.append(held)
        elif kind == "rate" and held.status == "waiting":
            self._ready.appendleft(held)
        elif kind == "hard" and held.status == "running":
            held.kill_reason = "time-limit"
            if self.pool.kill(held.request.id, signal.SIGKILL):
                log.error("task %s[%s] passed its hard time limit; killing its process",
                          held.request.task, held.request.id)
        elif kind == "soft" and held.status == "running":
            self.pool.soft_limit(held.request.id)

    def terminate(self, task_ids: list[str], signal_name: str) -> None:
        signum = getattr(signal, signal_name if signal_name.startswith("SIG") else f"SIG{signal_name}",
                         signal.SIGTERM)
        for task_id in task_ids:
            held = self._running.get(task_id)
            if held is not None and self.pool.kill(task_id, signum):
                held.kill_reason = "terminated"

    # -- settling ------------------------------------------------------------------------------

    def on_done(self, job: Job, result: JobResult) -> None:
        if result.deferred:
            self._writes.results.append((job, result))
        held = self._running.pop(job.task_id, None)
        if held is None:
            return
        if result.state == states.RETRY:
            self.state.on_retried(result.task_id, result.task_name, exception_repr=result.exception_repr,
                                  traceback=result.traceback)
        self.state.on_finished(result.task_id, result.task_name, result.state, result.runtime_s,
                               result_repr=result.result_repr, exception_repr=result.exception_repr,
                               traceback=result.traceback)
        if result.requeue and not held.acked:
            self._settle(held, self._writes.requeues)
        else:
            self._settle(held, self._writes.acks)

    def on_lost(self, job: Job, exitcode: int | None, shutting_down: bool, started: bool = True) -> None:
        held = self._running.pop(job.task_id, None)
        if held is None:
            return
        request, runtime_s = held.request, time.monotonic() - held.started_s
        if not started:
            log.info("requeueing %s[%s]: its pool process exited before starting it", request.task, request.id)
            self._settle(held, self._writes.republishes if held.acked else self._writes.requeues)
            return
        if held.kill_reason == "time-limit":
            limit = job.hard_time_limit_s
            self._store(request, TimeLimitExceeded(limit), states.FAILURE)
            self.state.on_finished(request.id, request.task, states.FAILURE, runtime_s,
                                   exception_repr=f"TimeLimitExceeded({limit})")
        elif held.kill_reason == "terminated":
            self._store(request, TaskRevokedError("terminated"), states.REVOKED)
            self.state.on_finished(request.id, request.task, states.REVOKED, runtime_s, revoke_reason="terminated")
        elif shutting_down:
            log.warning("requeueing %s[%s], killed by shutdown", request.task, request.id)
            self._settle(held, self._writes.republishes if held.acked else self._writes.requeues)
            return
        elif held.acks_late and held.task.option("reject_on_worker_lost", "task_reject_on_worker_lost"):
            self._settle(held, self._writes.requeues)
            return
        else:
            error = WorkerLostError(f"Worker exited prematurely: exitcode {exitcode}.")
            self._store(request, error, states.FAILURE)
            self.state.on_finished(request.id, request.task, states.FAILURE, runtime_s,
                                   exception_repr=repr(error))
        self._settle(held, self._writes.acks)

    def _finish_revoked(self, held: Held, reason: str) -> None:
        log.info("task %s[%s] %s; not running it", held.request.task, held.request.id, reason)
        self._store(held.request, TaskRevokedError(reason), states.REVOKED)
        self.state.on_finished(held.request.id, held.request.task, states.REVOKED, 0.0, revoke_reason=reason)
        self._settle(held, self._writes.acks)

    def _ack(self, held: Held) -> None:
        if not self._writes:
            self._writes_since_s = time.monotonic()
        held.acked = True
        self._writes.acks.append(held.delivery)
        self._release()  # an acknowledged message leaves the prefetch window, as in kombu's QoS

    def _settle(self, held: Held, into: list[Delivery]) -> None:
        """Forget ``held``; its delivery goes to acks, requeues or republishes (unless acked already).

        A message given back unfinished (requeue, republish) stops counting as reserved or
        active in the state, so heartbeats and ``inspect active`` do not report it any more.
        """
        if held.status == "done":
            return
        in_window = not held.acked
        if into is not self._writes.acks:
            self.state.on_requeued(held.request.id)
        if not (held.acked and into is self._writes.acks):
            into.append(held.delivery)
        held.acked = held.acked or into is self._writes.acks
        held.status = "done"
        self._held.pop(held, None)
        if in_window:
            self._release()

    def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        log.error("dead-lettering message %s from queue %r: %s", delivery.delivery_tag, delivery.queue, reason)
        self._writes.dead.append((delivery, reason))
        self._release()

    def requeue_waiting(self) -> None:
        """Shutdown: every held message that is not running goes back to its queue now.

        RPUSH puts each at the head, so pushing newest first keeps the original order.
        """
        for held in reversed([h for h in self._held if h.status == "waiting"]):
            self._settle(held, self._writes.requeues)
        self._ready.clear()

    def abandon_running(self) -> None:
        """Shutdown, after the pool stopped: tasks still running (threads cannot be killed) are
        requeued as if killed, so their messages survive the process exit."""
        for held in list(self._running.values()):
            if held.job is not None:
                self.on_lost(held.job, None, shutting_down=True)

    def requeue_deliveries(self, deliveries: list[Delivery]) -> None:
        self._writes.requeues.extend(deliveries)
        for _ in deliveries:
            self._release()

    def extend_visibility(self) -> None:
        extend = getattr(self.broker, "extend_visibility", None)
        unacked = [h.delivery for h in self._held if not h.acked]
        if extend is not None and unacked:
            try:
                extend(unacked)
            except BrokerConnectionError as exc:
                log.warning("could not refresh visibility of %d held message(s): %s", len(unacked), exc)

    def ack_hold_s(self) -> float:
        """How much longer an idle loop may keep its collected writes before flushing them: while
        they are only early acks, tasks still run and the first ack is under :data:`ACK_HOLD_S` old."""
        writes = self._writes
        if not writes.acks or not self._running or len(writes) != len(writes.acks):
            return 0.0
        return max(0.0, self._writes_since_s + ACK_HOLD_S - time.monotonic())

    def flush(self, at_least: int = 1, idle: bool = False) -> None:
        """Hand the collected results, acks, requeues, republishes and dead letters to the writer
        thread, if there are ``at_least`` that many. A loop about to go ``idle`` with nothing
        waiting to start sends them itself when the writer thread has nothing to do: a lone result
        or ack leaves without a thread hand-off, and the loop had nothing else to do meanwhile
        (with tasks waiting for a slot it would hold up the next start, so the thread sends)."""
        if len(self._writes) >= at_least:
            writes, self._writes = self._writes, Writes()
            if idle and not self._ready and self.pool.free_slots() > 0:
                self.writer.send_now(writes)
            else:
                self.writer.submit(writes)

    # -- results written by the worker itself ---------------------------------------------------

    def _store(self, request: TaskRequest, exc: BaseException, state: str, force: bool = False) -> None:
        """Store a failure decided here, outside the trace (the backend joins a chord member's chord).

        As in Celery, nothing is stored for a task that ignores results unless it also sets
        ``store_errors_even_if_ignored`` (``force`` stores anyway: an unknown task has no
        options). Such a task still joins its chord, as in Celery's ``mark_as_failure``:
        otherwise the chord would wait for it until its keys expire.
        """
        task = self.app.tasks.get(request.task)
        ignore = request.ignore_result
        if ignore is None and task is not None:
            ignore = task.option("ignore_result", "task_ignore_result")
        if ignore and task is not None:
            ignore = not task.option("store_errors_even_if_ignored", "task_store_errors_even_if_ignored")
        if ignore and not force:
            if request.chord and state in states.PROPAGATE_STATES:
                try:
                    on_chord_part_return(self.app, request, state, exc)
                except Exception:  # the counter talks to Redis directly; the engine must go on
                    log.exception("chord member %s could not join its chord", request.id)
            return
        try:
            self.app.backend.store_result(request.id, exc, state, None, request)
        except BackendError as exc_:
            log.error("could not store %s for %s: %s", state, request.id, exc_)

    def mark_revoked(self, task_ids: list[str]) -> None:
        """Control thread: store REVOKED now for ids not yet started (Celery 5.7 does the same)."""
        backend = self.app.backend
        for task_id in task_ids:
            try:
                if backend.get_meta(task_id).get("status") in REVOKABLE:
                    backend.store_result(task_id, TaskRevokedError("revoked"), states.REVOKED)
            except BackendError as exc:
                log.warning("could not mark %s revoked: %s", task_id, exc)


def _seconds_until(when: datetime | None) -> float:
    if when is None:
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (when - datetime.now(timezone.utc)).total_seconds()

"""The worker engine: one loop on the main thread that owns every held message.

Threads around it only post events into one :class:`queue.SimpleQueue` (reentrant, so
signal handlers may post too), plus a byte on a wake-up pipe when the loop sleeps: the
consumer posts fetched batches, thread pools post finished jobs, remote control posts
terminate requests. The loop sleeps in ``select`` on that pipe and on the prefork
children's pipes, so a child's reply is read right here, with no thread in between.
The loop handles events, fires due timers (ETAs, rate-limit waits, time limits,
visibility refresh and sweep), hands ready tasks to free pool slots (``solo`` runs them
right here) and hands broker writes to the writer thread in batches: every
:data:`~.dispatch.FLUSH_BATCH` writes while busy, and always before it sleeps.

Message life: fetched -> decoded (malformed: dead-lettered) -> held (ETA/rate limit in
the timer heap, else ready) -> running (early ack here) -> finished (late ack here).
Warm shutdown requeues whatever is held but not running at once, waits up to
``shutdown_timeout_s`` for running tasks, then kills the rest and requeues them too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import signal
import time
from types import FrameType
from typing import Any

from celeriac.brokers import BrokerConnectionError, connect
from celeriac.worker.consumer import Consumer, Fetched, QueuesIdle
from celeriac.worker.dispatch import FLUSH_BATCH, Dispatcher
from celeriac.worker.options import WorkerOptions
from celeriac.worker.pool import JobDone, JobLost, Pool, ShutdownInterrupt, SoloPool, ThreadPool
from celeriac.worker.prefork import PreforkPool
from celeriac.worker.services import Services
from celeriac.worker.state import WorkerState
from celeriac.worker.timers import Timers

log = logging.getLogger(__name__)

SWEEP_INTERVAL_MAX_S = 10.0


class _Terminate:
    def __init__(self, task_ids: list[str], signal_name: str) -> None:
        self.task_ids = task_ids
        self.signal_name = signal_name


class _Shutdown:
    def __init__(self, cold: bool) -> None:
        self.cold = cold


class Worker:
    """Consumes ``options.queues`` and runs tasks of ``app``; ``run()`` blocks until shutdown."""

    def __init__(self, app: Any, options: WorkerOptions | None = None) -> None:
        self.app = app
        self.options = options or WorkerOptions()
        conf = app.conf
        self.queues = list(self.options.queues) or [str(conf.task_default_queue)]
        self.hostname = self.options.hostname
        self.state = WorkerState(self.hostname, self.queues, self.options.concurrency, self.options.pod_name)
        transport_options = dict(conf.broker_transport_options or {})
        transport_options.setdefault("dead_letter_suffix", self.options.dead_letter_suffix)
        self.broker = connect(conf.broker_url, transport_options)
        multiplier = self.options.prefetch_multiplier
        if multiplier is None:
            multiplier = int(conf.worker_prefetch_multiplier)
        self.prefetch_limit = max(1, multiplier) * self.options.concurrency
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sleeping = False
        self.timers = Timers()
        self.pool = self._make_pool()
        self.fetch_batch_min = self.prefetch_limit if self.pool.lookahead else max(1, self.prefetch_limit // 2)
        """Under load, fetch only once this much of the window is free (see :meth:`_room`). A pool
        holding jobs ahead of its running ones (a prefork child's pipe) works through a fetch on
        them, so the loop waits until the whole window is free: the biggest batch, the fewest
        fetch calls per message. Other pools fetch at half, so their slots never wait for one."""
        self.dispatch = Dispatcher(app, self.broker, state=self.state, pool=self.pool, timers=self.timers,
                                   options=self.options, stop_requested=self._stop_requested)
        self.consumer = Consumer(
            self.broker, self.queues, room=self._room, post=self._post_batch,
            on_ready=self.state.set_consumer_ready, fetch_timeout_s=self.options.fetch_timeout_s,
        )
        self._warm = False
        self._cold = False
        self._idle_seen = False
        self._stop_signals = 0
        self._refresh_s = 0.0
        self._solo_refreshed_s = 0.0
        self._stop_asked = False
        self._prefetched = 0
        self.services: Services | None = None

    def _make_pool(self) -> Pool:
        if self.options.pool == "prefork":
            return PreforkPool(self.app, self.options.concurrency, self._post, self.options.max_tasks_per_child)
        if self.options.pool == "solo":
            return SoloPool(self.app, self._while_solo_runs)
        return ThreadPool(self.app, self.options.concurrency, self._post)

    def _post(self, event: Any) -> None:
        """Hand ``event`` to the loop; any thread, also signal handlers. The wake-up byte is written
        only while the loop sleeps (a full pipe holds enough of them already)."""
        self._events.put(event)
        if self._sleeping:
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_w, b"\0")

    # -- entry points --------------------------------------------------------------------------

    def request_shutdown(self, cold: bool = False) -> None:
        """Ask ``run()`` to stop: warm (finish running tasks first) or cold. Safe from signal handlers."""
        self._stop_asked = True
        self._post(_Shutdown(cold))
        if isinstance(self.pool, SoloPool):  # the loop is inside the task: the pool's watcher interrupts it
            self.pool.interrupt_after(0.0 if cold else self.options.shutdown_timeout_s)

    def terminate(self, task_ids: list[str], signal_name: str = "SIGTERM") -> None:
        """Kill the executions of running ``task_ids`` (``revoke --terminate``); thread-safe."""
        self._post(_Terminate(list(task_ids), signal_name))

    def run(self) -> int:
        """Run until shut down; returns the process exit code (0 after a clean shutdown)."""
        self._install_signals()
        try:  # whatever started is stopped again, even if a later part fails to start
            self.dispatch.writer.start()
            self.pool.start()
            self.services = self._make_services()
            self.services.start()
            if self.options.mingle:
                nodes = self.services.mingle(self.options.mingle_timeout_s)
                log.info("mingle: %d other node(s) answered; %d revoked id(s) known", nodes,
                         len(self.state.revoked_ids()))  # fmt: skip
            self._sweep()
            self.consumer.start()
            self._schedule_maintenance()
            log.info("worker %s ready: queues %s, pool %s x%d, prefetch %d", self.hostname,
                     ",".join(self.queues), self.options.pool, self.options.concurrency, self.prefetch_limit)
            self._loop()
        finally:
            self._shutdown()
        return 0

    def _make_services(self) -> Services:
        broker_client = getattr(self.broker, "client", None)
        client = broker_client or self.app.backend.client
        pool_kwargs = client.connection_pool.connection_kwargs
        url = str(self.app.conf.broker_url)
        amqp = url.split("://", 1)[0].lower() in {"amqp", "pyamqp", "amqps"}
        return Services(
            self.state, self.options, client,
            db=int(pool_kwargs.get("db", 0) or 0),
            prefix=str(getattr(self.broker, "prefix", "")),
            terminate=self.terminate,
            mark_revoked=self.dispatch.mark_revoked,
            task_names=self.registered_task_names,
            amqp_url=url if amqp else None,
            amqp_options=self._amqp_options() if amqp else None,
        )

    def _amqp_options(self) -> dict[str, Any]:
        """The broker's kombu transport options, without the ones only our broker reads."""
        options = dict(self.app.conf.broker_transport_options or {})
        options.pop("dead_letter_suffix", None)
        return options

    def registered_task_names(self) -> list[str]:
        """What ``inspect registered`` shows: the app's tasks without Celery's builtin ``celery.*``
        ones, which Celery hides too (they still run here)."""
        return sorted(name for name in self.app.tasks if not name.startswith("celery."))

    # -- the loop ------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            event = self._next_event()
            self.state.tick()
            while event is not None:
                self._handle(event)
                event = self._poll_event()
            self.timers.fire_due(self._on_timer)
            if not self._warm:
                self._run_ready()
            self.dispatch.flush(at_least=FLUSH_BATCH)
            prefetched = self.dispatch.waiting_count()
            if prefetched != self._prefetched:
                self._prefetched = prefetched
                self.state.set_prefetched(prefetched)
            self._fetch_more()
            if self._finished():
                return

    def _fetch_more(self) -> None:
        """If there is room: under a backlog fetch the next batch right here (no thread hand-off);
        otherwise let the consumer thread wait for messages in the broker."""
        room = self._room()
        if room <= 0:
            return
        batch = self.consumer.fetch_now(room) if self.consumer.backlog else []
        if batch:
            self.dispatch.reserve(len(batch))
            self._handle(Fetched(batch))
        else:
            self.consumer.room_changed()

    def _while_solo_runs(self) -> None:
        """The solo watcher, every second while a task runs on this loop's thread (blocked in it):
        the loop is alive, the acks it holds (an early ack, earlier batches) must not wait for the
        task, and the messages it holds keep their visibility as its refresh timer would."""
        self.state.tick()
        self.dispatch.flush()
        now_s = time.monotonic()
        if self._refresh_s and now_s - self._solo_refreshed_s >= self._refresh_s:
            self._solo_refreshed_s = now_s
            self.dispatch.extend_visibility()

    def _run_ready(self) -> None:
        try:
            self.dispatch.run_ready()
        except ShutdownInterrupt:  # solo: a cold shutdown stopped the task running on this thread
            log.warning("cold shutdown: the running task was interrupted and will be requeued")
            self._cold = True

    def _stop_requested(self) -> bool:
        return self._stop_asked

    def _next_event(self) -> Any:
        """The next event; sleeps (until a post, a pool pipe or the next timer) only when idle,
        and hands the collected broker writes to the writer before it does."""
        event = self._poll_event()
        if event is not None or self.dispatch.runnable():
            return event
        pool_fds = self.pool.fds()
        if pool_fds and self._read_pool(select.select(pool_fds, [], [], 0)[0]):
            return self._poll_event()
        hold_s = self.dispatch.ack_hold_s()
        if not hold_s:
            self.dispatch.flush(idle=True)
        timeout_s = min(1.0, max(0.0, self.timers.seconds_to_next()), hold_s or 1.0)
        self._sleeping = True
        try:
            event = self._poll_event()  # posted before the flag was up: it wrote no wake-up byte
            if event is not None:
                return event
            readable, _, _ = select.select([self._wake_r, *pool_fds], [], [], timeout_s)
        finally:
            self._sleeping = False
        if self._wake_r in readable:
            self._drain_wake_pipe()
        self._read_pool(readable)
        return self._poll_event()

    def _read_pool(self, readable: list[int]) -> bool:
        """Let the pool read its readable pipes (posting what they say); True if there were any."""
        found = False
        for fd in readable:
            if fd != self._wake_r:
                self.pool.on_readable(fd)
                found = True
        return found

    def _drain_wake_pipe(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    def _poll_event(self) -> Any:
        try:
            return self._events.get_nowait()
        except queue.Empty:
            return None

    def _handle(self, event: Any) -> None:
        if isinstance(event, Fetched):
            self._idle_seen = False
            if self._warm:
                self.dispatch.requeue_deliveries(event.deliveries)
            else:
                self.dispatch.accept(event.deliveries)
        elif isinstance(event, JobDone):
            self.dispatch.on_done(event.job, event.result)
        elif isinstance(event, JobLost):
            self.dispatch.on_lost(event.job, event.exitcode, shutting_down=self._warm, started=event.started)
        elif isinstance(event, _Terminate):
            self.dispatch.terminate(event.task_ids, event.signal_name)
        elif isinstance(event, _Shutdown):
            self._begin_shutdown(event.cold)
        elif isinstance(event, QueuesIdle):
            self._idle_seen = True

    def _finished(self) -> bool:
        if self._cold or (self._warm and self.dispatch.running_count() == 0):
            return True
        dispatch = self.dispatch
        if self.options.burst and self._idle_seen and dispatch.unacked_count() == 0 and dispatch.running_count() == 0:
            log.info("burst mode: queues are empty and nothing is held; exiting")
            return True
        return False

    # -- timers --------------------------------------------------------------------------------

    def _schedule_maintenance(self) -> None:
        vt = float(getattr(self.broker, "visibility_timeout_s", 0) or 0)
        if vt > 0:
            refresh = self.options.visibility_refresh_s or vt / 3
            self._refresh_s = refresh
            self.timers.add(refresh, ("refresh", refresh))
            sweep = min(SWEEP_INTERVAL_MAX_S, vt)
            self.timers.add(sweep, ("sweep", sweep))

    def _on_timer(self, payload: Any) -> None:
        kind = payload[0]
        if kind == "refresh":
            self.dispatch.extend_visibility()
            self.timers.add(payload[1], payload)
        elif kind == "sweep":
            self._sweep()
            self.timers.add(payload[1], payload)
        elif kind == "deadline":
            self._cold = True
            log.warning("shutdown timeout reached; killing %d running task(s) and requeueing them",
                        self.dispatch.running_count())
        else:
            self.dispatch.on_timer(payload)

    def _sweep(self) -> None:
        try:
            restored = self.broker.restore_visibility_timeouts()
        except BrokerConnectionError as exc:
            log.warning("visibility sweep skipped: %s", exc)
            return
        if restored:
            log.info("restored %d message(s) whose consumer vanished", restored)

    # -- consumer plumbing -----------------------------------------------------------------------

    def _room(self) -> int:
        """How many messages the consumer may fetch now.

        The prefetch window counts unacknowledged messages, as kombu's QoS does for Celery: with
        early acks a running task has left it. While the pool has work lined up, a fetch waits
        until :attr:`fetch_batch_min` places of the window are free: one round trip, one engine
        wake-up and one unacked write per batch instead of per message. A pool slot with nothing
        ready to run always allows a fetch at once, so this never idles the pool (ETA tasks
        filling the window included).
        """
        if self._warm:
            return 0
        room = self.prefetch_limit - self.dispatch.unacked_count()
        if room < self.fetch_batch_min and not self.dispatch.starving():
            return 0
        return room

    def _post_batch(self, event: Any) -> None:
        if isinstance(event, Fetched):
            self.dispatch.reserve(len(event.deliveries))
        self._post(event)

    # -- shutdown ------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        def warm_or_cold(signum: int, frame: FrameType | None) -> None:
            self._stop_signals += 1
            self._on_stop_signal(cold=self._warm or self._stop_signals > 1)

        def cold(signum: int, frame: FrameType | None) -> None:
            self._on_stop_signal(cold=True)

        try:
            signal.signal(signal.SIGTERM, warm_or_cold)
            signal.signal(signal.SIGINT, warm_or_cold)
            signal.signal(signal.SIGQUIT, cold)
        except ValueError:  # not the main thread (embedded in tests): request_shutdown() still works
            log.debug("signal handlers not installed: run() is not on the main thread")

    def _on_stop_signal(self, cold: bool) -> None:
        """A signal handler, on the main thread: with ``solo`` that may be inside a task, which
        a cold shutdown stops at once (also out of a blocking call such as ``time.sleep``)."""
        self.request_shutdown(cold)
        if cold and isinstance(self.pool, SoloPool) and self.pool.running_here():
            raise ShutdownInterrupt()

    def _begin_shutdown(self, cold: bool) -> None:
        if not self._warm:
            log.info("warm shutdown: no new tasks; waiting up to %.0fs for %d running task(s)",
                     self.options.shutdown_timeout_s, self.dispatch.running_count())
            self._warm = True
            self.state.set_consumer_ready(False)
            self.consumer.stop_nowait()
            self.dispatch.requeue_waiting()
            self.timers.add(self.options.shutdown_timeout_s, ("deadline",))
        if cold:
            log.warning("cold shutdown: killing running tasks and requeueing them")
            self._cold = True

    def _shutdown(self) -> None:
        self._warm = True
        self.consumer.stop()
        while True:  # batches the consumer posted after we stopped it go back, too
            event = self._poll_event()
            if event is None:
                break
            self._handle(event)
        self.dispatch.requeue_waiting()
        self.pool.stop(kill=self.dispatch.running_count() > 0)
        while True:  # jobs the pool reports lost while stopping are requeued
            event = self._poll_event()
            if event is None:
                break
            self._handle(event)
        self.dispatch.abandon_running()
        self.dispatch.flush()
        self.dispatch.writer.stop()
        if self.services is not None:
            self.services.stop()
        self.broker.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        log.info("worker %s stopped (pid %d)", self.hostname, os.getpid())


def worker_main(app: Any, options: WorkerOptions) -> int:
    """Build and run a worker; the CLI's entry point."""
    return Worker(app, options).run()


__all__ = ["Worker", "worker_main"]

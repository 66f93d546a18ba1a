"""The consumer thread: fetch batches from the broker while the engine has room for them.

It blocks in the broker (never busy-polls), takes at most ``room()`` messages per fetch
(prefetch limit minus what the engine already holds), and hands each batch to the engine
with ``post``. Broker connection errors mark the worker not ready, back off exponentially
(0.1 s doubling to 10 s), then resume: a fresh fetch re-establishes everything it needs,
so "stops consuming after reconnect" cannot happen here by construction.

While there is a backlog (the last fetch filled the room it was given) the engine fetches
the next batch itself with :meth:`Consumer.fetch_now`, which never blocks: under load that
saves two thread hand-offs per batch, which is what bounded a busy worker's parent process.
One lock makes the two fetchers take turns, so a batch never exceeds the room it was sized for.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celeriac.brokers import Broker, BrokerConnectionError, Delivery

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 10.0


@dataclass(frozen=True)
class Fetched:
    """A batch for the engine."""

    deliveries: list[Delivery]


@dataclass(frozen=True)
class QueuesIdle:
    """A fetch waited its full timeout and found nothing (burst mode uses this to exit)."""


class Consumer:
    """Runs :meth:`Broker.fetch` in a loop on its own thread."""

    def __init__(
        self,
        broker: Broker,
        queues: list[str],
        *,
        room: Callable[[], int],
        post: Callable[[Any], None],
        on_ready: Callable[[bool], None],
        fetch_timeout_s: float = 1.0,
    ) -> None:
        self.broker = broker
        self.queues = list(queues)
        self.room = room
        self.post = post
        self.on_ready = on_ready
        self.fetch_timeout_s = fetch_timeout_s
        self._stop = threading.Event()
        self._room_changed = threading.Event()
        self._thread: threading.Thread | None = None
        self._fetching = threading.Lock()
        self.backlog = False
        """The last fetch filled its room: more is probably waiting (read without the lock)."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="celeriac-consumer", daemon=True)
        self._thread.start()

    def stop_nowait(self) -> None:
        """Stop fetching after the fetch in progress (whose batch the engine will requeue)."""
        self._stop.set()
        self._room_changed.set()

    def stop(self) -> None:
        """Stop fetching; returns once no fetch is in progress (at most one fetch timeout)."""
        self._stop.set()
        self._room_changed.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def room_changed(self) -> None:
        """The engine finished or released something: re-check ``room()`` now."""
        self._room_changed.set()

    def fetch_now(self, room: int) -> list[Delivery]:
        """Engine side, under a backlog: up to ``room`` messages without waiting for any (nor for
        the consumer thread's fetch in progress); empty when there are none or on a broker error,
        which the consumer thread's next fetch reports and recovers from."""
        if not self._fetching.acquire(blocking=False):
            return []
        try:
            batch = self.broker.fetch(self.queues, room, 0.0)
        except BrokerConnectionError:
            batch = []
        finally:
            self._fetching.release()
        self.backlog = len(batch) >= room
        return batch

    def _run(self) -> None:
        backoff_s = BACKOFF_START_S
        ready = False
        while not self._stop.is_set():
            room = self.room()
            if room <= 0:
                self._room_changed.wait(self.fetch_timeout_s)
                self._room_changed.clear()
                continue
            try:
                with self._fetching:
                    room = self.room()  # the engine may have fetched while this thread waited
                    batch = self.broker.fetch(self.queues, room, self.fetch_timeout_s) if room > 0 else None
            except BrokerConnectionError as exc:
                if ready:
                    log.warning("lost the broker: %s; reconnecting", exc)
                ready = False
                self.on_ready(False)
                self._stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
                continue
            if not ready:
                ready = True
                backoff_s = BACKOFF_START_S
                self.on_ready(True)
                log.info("consuming from %s", ", ".join(self.queues))
            if batch is None:
                continue
            self.backlog = len(batch) >= room
            if batch:
                self.post(Fetched(batch))
            else:
                self.post(QueuesIdle())

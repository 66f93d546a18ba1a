"""The BeatSchedule custom resource: read it, watch it, and write the scheduler's part of its status.

The scheduler owns ``status.leader``, ``status.leaderSince``, ``status.entries`` and
``status.lastRunTime``; the operator owns ``conditions``, ``observedGeneration`` and
``entryCount``, which are never sent. Writes are JSON merge patches on the status subresource
carrying ``metadata.resourceVersion`` (optimistic concurrency): on 409 the object is re-read,
the records merged (per entry the later slot wins) and the patch sent again.

The watch uses a ``fieldSelector`` on ``metadata.name``, so the Role needs ``list``/``watch`` on
beatschedules in the namespace (``get`` for reads; ``get``/``patch`` on ``beatschedules/status``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from celeriac.beat import BeatApiError, BeatConfigError
from celeriac.beat.entries import ScheduleSpec, spec_from_resource
from celeriac.beat.state import Records, iso, merge, record_from_json, record_to_json

log = logging.getLogger(__name__)

GROUP = "celeriac.io"
VERSION = "v1alpha1"
PLURAL = "beatschedules"
MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT_S = 10.0
"""Client-side timeout of one read or status patch, so a hung API server cannot stall the loop."""
WATCH_TIMEOUT_S = 300
"""Server-side timeout of one watch request; the watch is then resumed from the last resourceVersion."""


def parse_ref(text: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` -> (namespace, name)."""
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise BeatConfigError(f"--from-resource expects NAMESPACE/NAME, got {text!r}")
    return namespace, name


class BeatScheduleClient:
    """One BeatSchedule: get, watch, patch status."""

    def __init__(self, api_client: Any, namespace: str, name: str) -> None:
        from kubernetes import client

        self.api = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.name = name

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return fn()
        except ApiException as exc:
            if exc.status == 409:
                raise
            if exc.status == 404:
                return None
            hint = (" (grant the scheduler's ServiceAccount get/list/watch on beatschedules and "
                    "get/patch on beatschedules/status)") if exc.status in (401, 403) else ""
            raise BeatApiError(f"{what} BeatSchedule {self.namespace}/{self.name} failed: "
                               f"{exc.status} {exc.reason}{hint}") from exc
        except Exception as exc:
            raise BeatApiError(f"{what} BeatSchedule {self.namespace}/{self.name}: API unreachable: {exc}") from exc

    def get(self) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        obj: dict[str, Any] | None = self._call("reading", lambda: self.api.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name, _request_timeout=REQUEST_TIMEOUT_S))
        return obj

    def patch_status(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Merge-patch the status subresource; ApiException 409 propagates."""
        obj: dict[str, Any] | None = self._call(
            "patching the status of", lambda: self.api.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURAL, self.name, body, _content_type=MERGE_PATCH,
                _request_timeout=REQUEST_TIMEOUT_S))
        return obj

    def watch(self, on_event: Callable[[str, dict[str, Any]], None], stop: threading.Event,
              backoff_s: float = 1.0) -> None:
        """Call ``on_event(type, object)`` for every change until ``stop`` is set; reconnects with backoff."""
        from kubernetes import watch as watch_module
        from kubernetes.client.exceptions import ApiException

        watch: Any = watch_module  # the watch module has no type hints

        resource_version: str | None = None
        delay_s = backoff_s
        while not stop.is_set():
            w = watch.Watch()
            try:
                kwargs: dict[str, Any] = {"field_selector": f"metadata.name={self.name}",
                                          "timeout_seconds": WATCH_TIMEOUT_S}
                if resource_version:
                    kwargs["resource_version"] = resource_version
                for event in w.stream(self.api.list_namespaced_custom_object, GROUP, VERSION,
                                      self.namespace, PLURAL, **kwargs):
                    if stop.is_set():
                        break
                    kind, obj = event.get("type"), event.get("object")
                    if kind == "ERROR" or not isinstance(obj, dict):
                        resource_version = None
                        break
                    resource_version = (obj.get("metadata") or {}).get("resourceVersion") or resource_version
                    on_event(str(kind), obj)
                    delay_s = backoff_s
            except ApiException as exc:
                if exc.status == 410:
                    resource_version = None  # too old: start over from a fresh list
                else:
                    log.warning("watch of BeatSchedule %s/%s failed: %s %s", self.namespace, self.name,
                                exc.status, exc.reason)
                    stop.wait(delay_s)
                    delay_s = min(delay_s * 2, 30.0)
            except Exception as exc:
                log.warning("watch of BeatSchedule %s/%s broke: %s", self.namespace, self.name, exc)
                stop.wait(delay_s)
                delay_s = min(delay_s * 2, 30.0)
            finally:
                w.stop()


class StatusStore:
    """Resource mode :class:`~celeriac.beat.state.SlotStore`: the BeatSchedule's status."""

    def __init__(self, client: BeatScheduleClient, attempts: int = 5) -> None:
        self.client = client
        self.attempts = attempts

    def load(self) -> Records:
        obj = self.client.get()
        return self._records(obj)

    @staticmethod
    def _records(obj: dict[str, Any] | None) -> Records:
        status = (obj or {}).get("status") or {}
        found: Records = {}
        for item in status.get("entries") or []:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                found[item["name"]] = record_from_json(item)
        return found

    def save(self, records: Records, leader: str, leader_since: datetime) -> Records:
        from kubernetes.client.exceptions import ApiException

        obj = self.client.get()
        for _ in range(self.attempts):
            if obj is None:
                log.warning("BeatSchedule %s/%s is gone; status not written", self.client.namespace, self.client.name)
                return records
            merged = merge(records, self._records(obj))
            last_runs = [r.last_run for r in merged.values() if r.last_run is not None]
            status: dict[str, Any] = {
                "leader": leader,
                "leaderSince": iso(leader_since),
                "entries": [record_to_json(name, merged[name]) for name in sorted(merged)],
            }
            if last_runs:
                status["lastRunTime"] = iso(max(last_runs))
            body = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "status": status}
            try:
                self.client.patch_status(body)
                return merged
            except ApiException as exc:
                if exc.status != 409:
                    raise BeatApiError(f"status patch failed: {exc.status} {exc.reason}") from exc
                log.info("BeatSchedule status changed under us (409); re-reading and merging")
                obj = self.client.get()
        raise BeatApiError(f"status of BeatSchedule {self.client.namespace}/{self.client.name} kept changing; "
                           f"gave up after {self.attempts} attempts")


class ResourceSource:
    """Resource mode :class:`~celeriac.beat.service.Source`: the watched BeatSchedule's spec.

    A spec that fails to parse (the CRD's validation should prevent it) is logged and the last
    good one kept; a deleted resource fires nothing until it comes back.
    """

    def __init__(self, client: BeatScheduleClient, stop: threading.Event) -> None:
        self.client = client
        self.stop = stop
        self.generation = 0
        self._spec: ScheduleSpec | None = None
        self._seen: object = None
        self._lock = threading.Lock()

    def load(self) -> ScheduleSpec | None:
        """Read the resource once (before the watch starts); an unreachable API is left to the watch."""
        try:
            obj = self.client.get()
        except BeatApiError as exc:
            log.warning("could not read BeatSchedule %s/%s yet (the watch will deliver it): %s",
                        self.client.namespace, self.client.name, exc)
            return None
        if obj is None:
            log.warning("BeatSchedule %s/%s does not exist (yet); waiting for it", self.client.namespace,
                        self.client.name)
        else:
            self._apply("ADDED", obj)
        return self.current()

    def current(self) -> ScheduleSpec | None:
        with self._lock:
            return self._spec

    def start(self, wake: Callable[[], None]) -> None:
        def on_event(kind: str, obj: dict[str, Any]) -> None:
            if self._apply(kind, obj):
                wake()

        threading.Thread(target=self.client.watch, args=(on_event, self.stop), name="beat-watch",
                         daemon=True).start()

    def _apply(self, kind: str, obj: dict[str, Any]) -> bool:
        if kind == "DELETED":
            with self._lock:
                self._spec, self._seen = None, None
                self.generation += 1
            log.warning("BeatSchedule %s/%s was deleted; firing stops", self.client.namespace, self.client.name)
            return True
        meta = obj.get("metadata") or {}
        marker = (meta.get("uid"), meta.get("generation"))
        if marker == self._seen:
            return False  # a status-only change (ours or the operator's)
        try:
            spec = spec_from_resource(obj)
        except BeatConfigError as exc:
            log.error("BeatSchedule %s/%s generation %s is unusable, keeping the previous spec: %s",
                      self.client.namespace, self.client.name, meta.get("generation"), exc)
            self._seen = marker
            return False
        with self._lock:
            self._spec, self._seen = spec, marker
            self.generation += 1
        log.info("BeatSchedule %s/%s generation %s: %d entr%s%s", self.client.namespace, self.client.name,
                 meta.get("generation"), len(spec.entries), "y" if len(spec.entries) == 1 else "ies",
                 " (suspended)" if spec.suspend else "")
        return True

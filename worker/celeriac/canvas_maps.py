"""Canvas over iterables: ``map``, ``starmap`` and ``chunks``, as Celery's builtin tasks run them.

``task.map(it)`` is one ``celery.map`` message, ``task.starmap(it)`` one ``celery.starmap``
message, ``task.chunks(it, n)`` a group of ``celery.starmap`` messages of ``n`` calls each;
kwargs are Celery's ``{"task": <signature>, "it": [...]}`` (plus ``n`` for chunks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeriac.canvas import group
from celeriac.result import GroupResult
from celeriac.signature import SUBTASK_TYPES, Signature, signature

if TYPE_CHECKING:
    from celeriac.app import Celeriac


class xmap(Signature):
    """``task.map(it)``: one message running ``task(item)`` for each item (``celery.map``)."""

    builtin = "celery.map"
    kind = "xmap"

    def __init__(self, task: Mapping[str, Any], it: Iterable[Any], app: Celeriac | None = None, **options: Any):
        sig = signature(task, app)
        super().__init__(self.builtin, (), {"task": sig, "it": list(it)}, options, self.kind, False,
                         app or sig._app)  # fmt: skip

    @classmethod
    def from_dict(cls, value: Mapping[str, Any], app: Celeriac | None = None) -> Signature:
        kw = value.get("kwargs") or {}
        return cls(kw["task"], kw.get("it") or (), app=app, **(value.get("options") or {}))


class xstarmap(xmap):
    """``task.starmap(it)``: one message running ``task(*item)`` for each item (``celery.starmap``)."""

    builtin = "celery.starmap"
    kind = "xstarmap"


class chunks(Signature):
    """``task.chunks(it, n)``: a group of ``celery.starmap`` messages of at most ``n`` items each."""

    def __init__(
        self, task: Mapping[str, Any], it: Iterable[Any], n: int, app: Celeriac | None = None, **options: Any
    ) -> None:
        sig = signature(task, app)
        super().__init__("celery.chunks", (), {"task": sig, "it": [list(i) for i in it], "n": int(n)}, options,
                         "chunks", False, app or sig._app)  # fmt: skip

    @classmethod
    def from_dict(cls, value: Mapping[str, Any], app: Celeriac | None = None) -> Signature:
        kw = value.get("kwargs") or {}
        return cls(kw["task"], kw.get("it") or (), int(kw["n"]), app=app, **(value.get("options") or {}))

    def group(self) -> group:
        kw = self["kwargs"]
        items, size = list(kw["it"]), int(kw["n"])
        parts = [items[i : i + size] for i in range(0, len(items), size)]
        return group(*(xstarmap(kw["task"], part, app=self._app) for part in parts), app=self._app)

    def apply_async(  # type: ignore[override]  # chunks return a GroupResult
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> GroupResult:
        return self.group().apply_async(args, kwargs, **{**self.options, **options})

    def apply(  # type: ignore[override]  # chunks return a GroupResult
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> GroupResult:
        return self.group().apply(args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> GroupResult:
        return self.apply_async(args, kwargs)


SUBTASK_TYPES.update(xmap=xmap, xstarmap=xstarmap, chunks=chunks)

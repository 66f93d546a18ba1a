"""Signatures: a task call packaged as data, in Celery's wire form.

``link``/``link_error`` callbacks and chain steps travel inside a message's ``embed`` as
``{"task", "args", "kwargs", "options", "subtask_type", "immutable"}`` dicts; a
:class:`Signature` is such a dict with the methods to send it. The canvas primitives
(chain, group, chord) build on this class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeriac.result import AsyncResult

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.task import Task


class Signature(dict[str, Any]):
    """A task call packaged as data, in Celery's wire form (``link``, ``link_error``, ``chain``).

    Only what ``link``/``link_error`` need lives here; the canvas primitives build on it.
    """

    def __init__(  # noqa: PLR0917 - Celery's positional signature
        self,
        task: str | Task,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        subtask_type: str | None = None,
        immutable: bool = False,
        app: Celeriac | None = None,
    ) -> None:
        name = task if isinstance(task, str) else task.name
        super().__init__(
            task=name,
            args=list(args),
            kwargs=dict(kwargs or {}),
            options=dict(options or {}),
            subtask_type=subtask_type,
            immutable=immutable,
        )
        self._app = app if app is not None else (None if isinstance(task, str) else task.app)

    @property
    def name(self) -> str:
        return str(self["task"])

    @property
    def args(self) -> list[Any]:
        return list(self["args"])

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self["kwargs"])

    @property
    def options(self) -> dict[str, Any]:
        return dict(self["options"])

    @property
    def immutable(self) -> bool:
        return bool(self["immutable"])

    @property
    def app(self) -> Celeriac:
        from celeriac.app import current_app  # lazily: app imports this module

        return self._app if self._app is not None else current_app()

    def set(self, **options: Any) -> Signature:
        self["options"].update(options)
        return self

    def clone(self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any) -> Signature:
        """A copy with ``args`` prepended (unless immutable), kwargs and options merged."""
        new_args = self.args if self.immutable else [*args, *self.args]
        new_kwargs = self.kwargs if self.immutable else {**self.kwargs, **(kwargs or {})}
        return Signature(
            self.name,
            new_args,
            new_kwargs,
            {**self.options, **options},
            self["subtask_type"],
            self.immutable,
            self._app,
        )

    def apply_async(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        merged = self.clone(args, kwargs, **options)
        task = merged.app.tasks.get(merged.name)
        if task is not None:
            return task.apply_async(merged.args, merged.kwargs, **merged.options)
        return merged.app.send_task(merged.name, merged.args, merged.kwargs, **merged.options)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def link(self, callback: Mapping[str, Any]) -> Signature:
        self["options"].setdefault("link", []).append(signature(callback))
        return self

    def link_error(self, errback: Mapping[str, Any]) -> Signature:
        self["options"].setdefault("link_error", []).append(signature(errback))
        return self


def signature(value: Mapping[str, Any] | Signature, app: Celeriac | None = None) -> Signature:
    """A :class:`Signature` from its dict form (as found in ``embed``) or itself."""
    if isinstance(value, Signature):
        return value
    return Signature(
        str(value["task"]),
        value.get("args") or (),
        value.get("kwargs") or {},
        value.get("options") or {},
        value.get("subtask_type"),
        bool(value.get("immutable", False)),
        app,
    )


def signature_list(value: Any) -> list[Signature] | None:
    """``link``/``link_error``: one signature or a list of them, as a list (None if empty)."""
    if not value:
        return None
    items = [value] if isinstance(value, Mapping) else list(value)
    return [signature(item) for item in items]

"""Signatures: a task call packaged as data, in Celery's wire form.

``link``/``link_error`` callbacks, chain steps and chord bodies travel inside a
message's ``embed`` as ``{"task", "args", "kwargs", "options", "subtask_type",
"immutable"}`` dicts; a :class:`Signature` is such a dict with the methods to send it.
``subtask_type`` names the canvas class (``chain``, ``group``, ``chord``, ``chunks``...)
so a dict read from a message comes back as the right class (see :mod:`celeriac.canvas`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeriac.result import AsyncResult

if TYPE_CHECKING:
    from celeriac.app import Celeriac
    from celeriac.task import Task

SUBTASK_TYPES: dict[str, type[Signature]] = {}
"""``subtask_type`` -> class; :mod:`celeriac.canvas` registers chain, group, chord and friends."""


class Signature(dict[str, Any]):
    """A task call packaged as data; ``|`` chains, ``freeze`` fixes the ids before sending."""

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

    @classmethod
    def from_dict(cls, value: Mapping[str, Any], app: Celeriac | None = None) -> Signature:
        return cls(
            str(value["task"]),
            value.get("args") or (),
            value.get("kwargs") or {},
            value.get("options") or {},
            value.get("subtask_type"),
            bool(value.get("immutable", False)),
            app,
        )

    @property
    def name(self) -> str:
        return str(self["task"])

    task = name

    @property
    def args(self) -> list[Any]:
        return list(self["args"])

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self["kwargs"])

    @property
    def options(self) -> dict[str, Any]:
        """The options dict itself (mutations stick, as in Celery)."""
        options: dict[str, Any] = dict.__getitem__(self, "options")
        return options

    @property
    def subtask_type(self) -> str | None:
        return self.get("subtask_type")

    @property
    def immutable(self) -> bool:
        return bool(self["immutable"])

    @property
    def id(self) -> str | None:
        """The task id once frozen (``options.task_id``)."""
        value = self.options.get("task_id")
        return None if value is None else str(value)

    @property
    def app(self) -> Celeriac:
        from celeriac.app import current_app  # lazily: app imports this module

        return self._app if self._app is not None else current_app()

    def __repr__(self) -> str:
        star = "" if not self.immutable else "i"
        return f"{self.name}.s{star}({', '.join(repr(a) for a in self.args)})"

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        if immutable is not None:
            self["immutable"] = immutable
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        self["immutable"] = immutable

    def _merged(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
        """Celery's partial application: args prepended, kwargs merged (both unless immutable)."""
        opts = {**self.options, **(options or {})}
        if self.immutable:
            return self.args, self.kwargs, opts
        return [*args, *self.args], {**self.kwargs, **(kwargs or {})}, opts

    def clone(self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any) -> Signature:
        """A deep copy, of the same canvas class, with ``args``/``kwargs`` applied and options merged."""
        new_args, new_kwargs, new_options = self._merged(args, kwargs, options)
        plain = plain_copy({**self, "args": new_args, "kwargs": new_kwargs, "options": new_options})
        return signature(plain, self._app)

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Mapping[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> AsyncResult:
        """Fix this call's id (and group/chord membership) before it is sent; Celery's rules."""
        opts = self.options
        task_id = opts.get("task_id")
        if task_id is None:
            task_id = opts["task_id"] = _id or str(uuid.uuid4())
        if "reply_to" not in opts:
            opts["reply_to"] = self.app.oid
        if group_id and "group_id" not in opts:
            opts["group_id"] = group_id
        if chord:
            opts["chord"] = chord
        if group_index is not None:
            opts["group_index"] = group_index
        if root_id:
            opts["root_id"] = root_id
        if parent_id:
            opts["parent_id"] = parent_id
        return AsyncResult(str(task_id), app=self._app, task_name=self.name)

    def apply_async(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        new_args, new_kwargs, opts = self._merged(args, kwargs, options)
        opts.pop("subtask_type", None)
        task = self.app.tasks.get(self.name)
        if task is not None:
            return task.apply_async(new_args, new_kwargs, **opts)
        return self.app.send_task(self.name, new_args, new_kwargs, **opts)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def apply(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        """Run here and now (Celery's ``apply``): an ``EagerResult``, nothing is sent."""
        new_args, new_kwargs, opts = self._merged(args, kwargs, options)
        result: AsyncResult = self.app.tasks[self.name].apply(new_args, new_kwargs, task_id=opts.get("task_id"),
                                               link=opts.get("link"), link_error=opts.get("link_error"))  # fmt: skip
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task function here, with the signature's partial arguments applied."""
        new_args, new_kwargs, _ = self._merged(args, kwargs)
        return self.app.tasks[self.name](*new_args, **new_kwargs)

    def link(self, callback: Mapping[str, Any]) -> Signature:
        self.options.setdefault("link", []).append(signature(callback, self._app))
        return signature(callback, self._app)

    def link_error(self, errback: Mapping[str, Any]) -> Signature:
        self.options.setdefault("link_error", []).append(signature(errback, self._app))
        return signature(errback, self._app)

    def on_error(self, errback: Mapping[str, Any]) -> Signature:
        """Like ``link_error`` but returns this signature, for fluent use."""
        self.link_error(errback)
        return self

    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        """``a | b``: a chain (``group | task`` becomes a chord, as in Celery)."""
        from celeriac.canvas import pipe  # lazily: canvas builds on this module

        return pipe(self, other)

    def AsyncResult(self, task_id: str) -> AsyncResult:
        return AsyncResult(task_id, app=self._app, task_name=self.name)


def plain_copy(value: Any) -> Any:
    """A deep copy with every Signature turned into a plain dict (lists stay lists)."""
    if isinstance(value, Mapping):
        return {key: plain_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_copy(item) for item in value]
    return value


def signature(value: Mapping[str, Any] | Signature, app: Celeriac | None = None) -> Signature:
    """A :class:`Signature` (of the class its ``subtask_type`` names) from its dict form, or itself."""
    if isinstance(value, Signature):
        if value._app is None and app is not None:
            value._app = app
        return value
    cls = SUBTASK_TYPES.get(str(value.get("subtask_type")), Signature)
    return cls.from_dict(value, app)


maybe_signature = signature


def signature_list(value: Any) -> list[Signature] | None:
    """``link``/``link_error``: one signature or a list of them, as a list (None if empty)."""
    if not value:
        return None
    items = [value] if isinstance(value, Mapping) else list(value)
    return [signature(item) for item in items]

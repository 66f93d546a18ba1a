"""Celery's builtin task names, registered on every app so our worker runs what Celery sends.

Celery's canvas never sends ``celery.group``/``celery.chain``/``celery.chord`` as task
messages itself (nested canvas travels as signatures in ``embed`` and is rebuilt from
``subtask_type``), but older clients and ``Task.replace`` do use ``celery.group`` and
``celery.accumulate``, and ``map``/``starmap``/``chunks`` always go out as
``celery.map``/``celery.starmap``/``celery.chunks``. ``celery.chord_unlock`` is not
needed: the Redis chord counter (:mod:`celeriac.chord_counter`) joins natively.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celeriac.app import Celeriac

NAMES = (
    "celery.accumulate",
    "celery.map",
    "celery.starmap",
    "celery.chunks",
    "celery.group",
    "celery.chain",
    "celery.chord",
)


def register_builtins(app: Celeriac) -> None:
    """Add Celery's builtin tasks to ``app`` (no argument checking: callers are other nodes)."""
    from celeriac import canvas, canvas_maps  # lazily: canvas imports the app through signatures

    def accumulate(*args: Any, **kwargs: Any) -> Any:
        index = kwargs.get("index")
        return args[index] if index is not None else list(args)

    def xmap(task: Mapping[str, Any], it: Sequence[Any]) -> list[Any]:
        run = app.tasks[str(task["task"])]
        return [run(item) for item in it]

    def xstarmap(task: Mapping[str, Any], it: Sequence[Sequence[Any]]) -> list[Any]:
        run = app.tasks[str(task["task"])]
        return [run(*item) for item in it]

    def chunks(task: Mapping[str, Any], it: Sequence[Any], n: int) -> None:
        canvas_maps.chunks(task, it, n, app=app).apply_async()

    def group(
        tasks: Sequence[Mapping[str, Any]],
        result: Any = None,
        group_id: str | None = None,
        partial_args: Sequence[Any] = (),
        add_to_parent: bool = True,
    ) -> None:
        canvas.group(*tasks, app=app).apply_async(tuple(partial_args), task_id=group_id)

    def chain(*args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("chain is not a real task")

    def chord(
        header: Any, body: Mapping[str, Any], partial_args: Sequence[Any] = (), **kwargs: Any
    ) -> None:
        canvas.chord(header, body, app=app).apply_async(tuple(partial_args))

    functions: tuple[Callable[..., Any], ...] = (accumulate, xmap, xstarmap, chunks, group, chain, chord)
    for name, fun in zip(NAMES, functions, strict=True):
        if name not in app._tasks:
            app._task_from_fun(fun, name=name, typing=False)

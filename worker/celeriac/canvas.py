"""Canvas: chain, group, chord, chunks, map and starmap, encoded exactly as Celery 5.7 encodes them.

Each primitive is a :class:`~celeriac.signature.Signature` whose ``task`` is Celery's
builtin name (``celery.chain``, ``celery.group``, ``celery.chord``...) and whose
``subtask_type`` lets any process rebuild it from a message. On the wire
(wire-protocol §1.4): a chain's first task carries the other steps, pre-frozen, in
``embed.chain`` reversed; a group is N messages sharing ``group``/``group_index``; a
chord's header messages each carry the body in ``embed.chord`` after the producer wrote
the Redis chord size (:mod:`celeriac.chord_counter`). A group followed by another step inside a
chain becomes a chord with that step as its body, as in Celery.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeriac.result import AsyncResult, GroupResult
from celeriac.signature import SUBTASK_TYPES, Signature, signature
from celeriac.task import current_task

if TYPE_CHECKING:
    from celeriac.app import Celeriac


def _app_of(tasks: Sequence[Signature], app: Celeriac | None) -> Celeriac | None:
    if app is not None:
        return app
    return next((task._app for task in tasks if task._app is not None), None)


def _tasks_arg(tasks: tuple[Any, ...]) -> list[Any]:
    """``chain(a, b)`` and ``chain([a, b])`` both work, as in Celery."""
    if len(tasks) == 1 and not isinstance(tasks[0], Mapping) and isinstance(tasks[0], Iterable):
        return list(tasks[0])
    return list(tasks)


class _TaskList(Signature):
    """A canvas over a list of signatures (``kwargs.tasks``): what chain and group share."""

    subtask_type = ""

    def __init__(self, *tasks: Any, app: Celeriac | None = None, **options: Any) -> None:
        sigs = [signature(task, app) for task in _tasks_arg(tasks)]
        kind = self.subtask_type
        super().__init__(f"celery.{kind}", (), {"tasks": sigs}, options, kind, False, _app_of(sigs, app))

    @classmethod
    def from_dict(cls, value: Mapping[str, Any], app: Celeriac | None = None) -> Signature:
        made = cls(*(value.get("kwargs") or {}).get("tasks", ()), app=app, **(value.get("options") or {}))
        made["args"] = list(value.get("args") or ())
        made["immutable"] = bool(value.get("immutable", False))
        return made

    @property
    def tasks(self) -> list[Signature]:
        return self["kwargs"]["tasks"]  # type: ignore[no-any-return]


class chain(_TaskList):
    """Run tasks one after another, each result the first argument of the next (unless immutable)."""

    subtask_type = "chain"

    def __repr__(self) -> str:
        return " | ".join(repr(task) for task in self.tasks) or "chain()"

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Mapping[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> AsyncResult:
        """Freeze every step in place; the result is the last step's, its ``parent`` the one before."""
        tasks, results = prepare_steps(
            self.app, (), None, self.tasks, root_id, None, _id, group_id, chord, group_index, clone=False
        )
        self.tasks[:] = list(reversed(tasks))
        if not results:
            return AsyncResult(_id or str(uuid.uuid4()), app=self._app)
        self.options["task_id"] = results[0].id
        return results[0]

    def apply_async(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        options = {**self.options, **options}
        args = () if self.immutable else tuple(args or ()) + tuple(self.args)
        link = options.pop("link", None)
        link_error = options.pop("link_error", None)
        tasks, results = prepare_steps(
            self.app, args, kwargs, self.tasks, options.pop("root_id", None), link_error,
            options.pop("task_id", None), options.pop("group_id", None), options.pop("chord", None),
            options.pop("group_index", None),
        )  # fmt: skip
        if not results:
            return AsyncResult(str(uuid.uuid4()), app=self._app)
        if link:
            for callback in link if isinstance(link, list) else [link]:
                tasks[0].link(callback)
        first = tasks.pop()
        options["chain"] = [*(options.get("chain") or []), *tasks]  # Celery sends [] for the last step
        sent = first.apply_async(**options)
        return results[0] if tasks else sent

    def __call__(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def apply(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        """Run every step here, in order (Celery's ``chain.apply``, used when ``task_always_eager``)."""
        last: AsyncResult | None = None
        partial: tuple[Any, ...] = () if self.immutable else tuple(args or ()) + tuple(self.args)
        for task in self.tasks:
            result = task.clone(partial, kwargs if last is None else None).apply(**options)
            result.parent = last
            partial, last = (result.get(),), result
        return last if last is not None else AsyncResult(str(uuid.uuid4()), app=self._app)


def _is_chain_led_by_task(body: Any) -> bool:
    return isinstance(body, chain) and bool(body.tasks) and not isinstance(body.tasks[0], group)


def _unroll_single(task: Signature) -> Signature:
    """A group of one is just that task (Celery's maybe_unroll_group)."""
    if isinstance(task, group) and len(task.tasks) == 1:
        return task.tasks[0].clone()
    return task


def prepare_steps(  # noqa: PLR0917 - mirrors Celery's prepare_steps
    app: Celeriac,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None,
    steps_in: Sequence[Signature],
    root_id: str | None,
    link_error: Any,
    last_task_id: str | None,
    group_id: str | None,
    chord_body: Mapping[str, Any] | None,
    group_index: int | None,
    *,
    clone: bool = True,
) -> tuple[list[Signature], list[AsyncResult]]:
    """Flatten and freeze a chain's steps, last first; a group followed by a step becomes a chord.

    Returns the frozen steps and their results, both in reverse order (last step first).
    """
    steps: deque[Signature] = deque(signature(step, app) for step in steps_in)
    while steps and isinstance(steps[0], chain):
        head = steps.popleft()
        flat = head.clone() if clone else head
        assert isinstance(flat, chain)
        steps.extendleft(reversed(flat.tasks))
    tasks: list[Signature] = []
    results: list[AsyncResult] = []
    prev_task: Signature | None = None
    prev_res: AsyncResult | None = None
    errbacks = [] if not link_error else (link_error if isinstance(link_error, list) else [link_error])
    while steps:
        task = _unroll_single(steps.pop())
        is_first, is_last = not steps, not tasks
        if clone and isinstance(task, chord) and _is_chain_led_by_task(task.body):
            steps.extend(task.unroll_body())
            continue
        if clone:
            task = task.clone(args, kwargs) if is_first else task.clone()
        elif is_first and args:
            task["args"] = [*args, *task.args]
        if isinstance(task, chain):
            steps.extend(task.tasks)
            continue
        if isinstance(task, group) and prev_task is not None and prev_res is not None:
            tasks.pop()
            results.pop()
            task = chord(task, body=prev_task, app=app, task_id=prev_res.id, root_id=root_id)
            prev_task = tasks[-1] if tasks else None
            prev_res = results[-1] if results else None
            is_last = not tasks
        if is_last:
            res = task.freeze(last_task_id, root_id=root_id, group_id=group_id, chord=chord_body,
                              group_index=group_index)  # fmt: skip
        else:
            res = task.freeze(root_id=root_id)
        if prev_res is not None and prev_res.parent is None:
            prev_res.parent = res
        for errback in errbacks:
            task.link_error(errback)
            if isinstance(task, chord):
                task.body.link_error(errback)
        tasks.append(task)
        results.append(res)
        prev_task, prev_res = task, res
        if isinstance(task, chord):
            node = res
            while node.parent is not None and isinstance(node.parent, AsyncResult):
                node = node.parent
            prev_res = node
    return tasks, results


class group(_TaskList):
    """Run tasks in parallel: one message each, sharing a group id; results as a :class:`GroupResult`."""

    subtask_type = "group"

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(task) for task in self.tasks)}])"

    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        return chord(self, body=other, app=self._app)

    def _unrolled(self) -> list[Signature]:
        """Members with nested groups flattened and empty chains dropped (Celery's _prepared)."""
        out: list[Signature] = []
        for task in self.tasks:
            if isinstance(task, group):
                out.extend(task._unrolled())
            elif not (isinstance(task, chain) and not task.tasks):
                out.append(task)
        return out

    def freeze(  # type: ignore[override]  # a group's result is a GroupResult
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Mapping[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> GroupResult:
        opts = self.options
        gid = opts.setdefault("task_id", _id or str(uuid.uuid4()))
        if group_id:
            opts["group_id"] = group_id
        if chord:
            opts["chord"] = chord
        if group_index is not None:
            opts["group_index"] = group_index
        root_id = opts.setdefault("root_id", root_id)
        parent_id = opts.setdefault("parent_id", parent_id)
        results = [
            task.freeze(group_id=group_id, root_id=root_id, parent_id=parent_id, group_index=index)
            for index, task in enumerate(self.tasks)
        ]
        return GroupResult(str(gid), results, app=self._app)

    def apply_async(  # type: ignore[override]  # a group's result is a GroupResult
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> GroupResult:
        if options.get("link") is not None:
            raise TypeError("Cannot add link to group: use a chord")
        if options.get("link_error") is not None:
            raise TypeError("Cannot add link to group: do that on individual tasks")
        options.pop("link", None)
        options.pop("link_error", None)
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        options = {**self.options, **options}
        group_id = str(options.pop("task_id", None) or uuid.uuid4())
        options["group_id"] = group_id
        root_id = options.get("root_id")
        options.pop("group_index", None)
        chord_body = options.pop("chord", None)
        members = [task.clone() for task in self._unrolled()]
        results = [
            task.freeze(group_id=group_id, root_id=root_id, group_index=index) for index, task in enumerate(members)
        ]
        if chord_body is not None and members:
            from celeriac.chord_counter import set_chord_size  # lazily: chord needs the backend

            set_chord_size(self.app.backend, group_id, sum(_descend(task) for task in members))
        add_to_parent = options.pop("add_to_parent", True)
        for task in members:
            task.apply_async(args, kwargs, chord=chord_body, add_to_parent=False, **options)
        result = GroupResult(group_id, results, app=self._app)
        parent = current_task()
        if add_to_parent and parent is not None:
            parent[1].children.append(result)  # listed in the caller's ``children``, as in Celery
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> GroupResult:
        return self.apply_async(args, kwargs)

    def apply(  # type: ignore[override]  # a group's result is a GroupResult
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> GroupResult:
        """Run every member here (Celery's ``group.apply``, used when ``task_always_eager``)."""
        group_id = str(self.options.get("task_id") or uuid.uuid4())
        return GroupResult(group_id, [task.apply(args, kwargs) for task in self._unrolled()], app=self._app)


def _descend(task: Signature) -> int:
    """How many header results a chord member contributes (Celery's _chord._descend)."""
    if isinstance(task, group):
        return sum(_descend(member) for member in task.tasks)
    if isinstance(task, chain) and task.tasks:
        return _descend(task.tasks[-1])
    return 1


_NOT_FOR_BODY = frozenset({"parent_id", "add_to_parent", "countdown", "eta", "task_id", "group_id", "group_index",
                           "chord"})  # fmt: skip
"""Options of a chord call that stay with the header."""


class chord(Signature):
    """A group (header) whose ordered results go, as one list, to a body task once all succeed."""

    def __init__(
        self,
        header: Any,
        body: Mapping[str, Any] | None = None,
        *,
        kwargs: Mapping[str, Any] | None = None,
        app: Celeriac | None = None,
        **options: Any,
    ) -> None:
        head = header if isinstance(header, group) else group(*_tasks_arg((header,)), app=app)
        made_body = signature(body, app) if body is not None else None
        app = _app_of([head, *([made_body] if made_body is not None else [])], app)
        super().__init__(
            "celery.chord", (), {"kwargs": dict(kwargs or {}), "header": head, "body": made_body}, options,
            "chord", False, app,
        )  # fmt: skip

    @classmethod
    def from_dict(cls, value: Mapping[str, Any], app: Celeriac | None = None) -> chord:
        kw = dict(value.get("kwargs") or {})
        header = kw.get("header") or []
        head = signature(header, app) if isinstance(header, Mapping) else group(*header, app=app)
        made = cls(head, kw.get("body"), kwargs=kw.get("kwargs"), app=app, **(value.get("options") or {}))
        made["args"] = list(value.get("args") or ())
        made["immutable"] = bool(value.get("immutable", False))
        return made

    @property
    def tasks(self) -> group:
        return self["kwargs"]["header"]  # type: ignore[no-any-return]

    header = tasks

    @property
    def body(self) -> Signature:
        return self["kwargs"]["body"]  # type: ignore[no-any-return]

    @body.setter
    def body(self, value: Signature) -> None:
        self["kwargs"]["body"] = value

    def __repr__(self) -> str:
        return f"chord({self.tasks!r}, {self.body!r})"

    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        if self.body is None or isinstance(other, group):
            return super().__or__(other)
        made = self.clone()
        assert isinstance(made, chord)
        made.body = pipe(made.body, other)
        return made

    def unroll_body(self) -> list[Signature]:
        """``chord(h, chain(a, b, c))`` -> ``chord(h, a), b, c`` (one body copy per header task is enough)."""
        made = self.clone()
        assert isinstance(made, chord)
        assert isinstance(made.body, chain)
        body_tasks = [task.clone() for task in made.body.tasks]
        made.body = body_tasks[0]
        return [made, *body_tasks[1:]]

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Mapping[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> AsyncResult:
        header = self.tasks
        gid = str(header.options.setdefault("task_id", str(uuid.uuid4())))
        header.options.setdefault("root_id", root_id)
        header.options.setdefault("parent_id", parent_id)
        results = [task.freeze(group_index=index) for index, task in enumerate(header.tasks)]
        self.options["task_id"] = gid
        body_result = self.body.freeze(_id, root_id=root_id, chord=chord, group_id=group_id,
                                       group_index=group_index)  # fmt: skip
        body_result.parent = GroupResult(gid, results, app=self._app)
        return body_result

    def apply_async(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        """Write the chord size, send the header with the body embedded; returns the body's result."""
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        args = tuple(args or ()) + tuple(self.args) if not self.immutable else tuple(self.args)
        header = self.tasks.clone()
        assert isinstance(header, group)
        body = self.body.clone()
        # The body takes the call's options first, then the chord's own (Celery: apply_async, then run).
        for source in (options, self.options):
            for key, value in source.items():
                if key in {"link", "link_error"}:
                    for callback in value if isinstance(value, list) else ([value] if value else []):
                        getattr(body, key)(callback)
                elif key not in _NOT_FOR_BODY and (source is options or key not in options):
                    body.options[key] = value
        options = {**self.options, **options}
        for key in ("task_id", "group_id", "group_index", "chord", "chain"):
            options.pop(key, None)
        options.pop("link", None)
        options.pop("link_error", None)
        group_id = str(header.options.get("task_id") or uuid.uuid4())
        body_result = body.freeze(group_id=group_id, root_id=options.get("root_id"))
        if not header.tasks:
            body.apply_async(([],))
            body_result.parent = GroupResult(group_id, [], app=self._app)
            return body_result
        header.options.pop("task_id", None)
        header_result = header.apply_async(args, kwargs, task_id=group_id, chord=body, **options)
        body_result.parent = header_result
        return body_result

    def apply(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        """Run the header here, then the body with its results (used when ``task_always_eager``)."""
        header = self.tasks.apply(tuple(args or ()) + tuple(self.args), kwargs)
        result = self.body.apply((header.get(),))
        result.parent = header
        return result

    def __call__(self, body: Any = None, **options: Any) -> AsyncResult:
        """``chord(header)(body)``: send now with ``body``."""
        made = chord(self.tasks, body if body is not None else self.body, app=self._app, **self.options)
        return made.apply_async((), None, **options)


def pipe(left: Signature, right: Any) -> Signature:
    """The ``|`` operator's rules (Celery's): chains flatten, ``group | x`` and ``chain(.., group) | x`` make chords."""
    if not isinstance(right, Signature):
        right = signature(right, left._app)
    if isinstance(left, chain):
        tasks = [task.clone() for task in left.tasks]
        if isinstance(right, chain):
            result: Signature = left
            for task in right.tasks:
                result = pipe(result, task)
            return result
        if tasks and isinstance(tasks[-1], group) and not isinstance(right, group):
            tasks[-1] = chord(tasks[-1], right, app=left._app)
            return chain(*tasks, app=left._app)
        if tasks and isinstance(tasks[-1], chord) and not isinstance(right, (chord, group)):
            last = tasks[-1]
            assert isinstance(last, chord)
            last.body = pipe(last.body, right)
            return chain(*tasks, app=left._app)
        return chain(*tasks, right, app=left._app)
    if isinstance(right, chain):
        return chain(left, *right.tasks, app=left._app)
    if isinstance(right, group):
        return chain(left, _unroll_single(right), app=left._app)
    return chain(left, right, app=left._app)


SUBTASK_TYPES.update(chain=chain, group=group, chord=chord)

"""Pure canvas logic: the ``|`` rules, cloning, freezing, rebuilding from dicts, builtin tasks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from celeriac import Celeriac, GroupResult, Signature, chain, chord, chunks, group, signature, xmap, xstarmap


@pytest.fixture
def app() -> Celeriac:
    return Celeriac("canvas_unit", broker="redis://127.0.0.1:1/0", set_as_current=False)


@pytest.fixture
def add(app: Celeriac) -> Any:
    @app.task(name="u.add")
    def add(x: int, y: int = 0) -> int:
        return x + y

    return add


def test_pipe_flattens_into_one_chain(add: Any) -> None:
    workflow = add.s(1, 1) | add.s(2) | (add.s(3) | add.s(4))
    assert isinstance(workflow, chain)
    assert [task.args for task in workflow.tasks] == [[1, 1], [2], [3], [4]]


def test_group_piped_into_a_task_is_a_chord(add: Any) -> None:
    workflow = group(add.s(1), add.s(2)) | add.s()
    assert isinstance(workflow, chord)
    assert [task.args for task in workflow.tasks.tasks] == [[1], [2]]
    assert workflow.body.name == "u.add"


def test_chain_ending_in_a_group_piped_into_a_task_ends_in_a_chord(add: Any) -> None:
    workflow = add.s(1, 1) | group(add.s(1), add.s(2)) | add.s(10)
    assert isinstance(workflow, chain)
    assert [type(task).__name__ for task in workflow.tasks] == ["Signature", "chord"]


def test_chord_piped_into_a_task_extends_its_body(add: Any) -> None:
    workflow = chord([add.s(1)], add.s()) | add.s(5)
    assert isinstance(workflow, chord)
    assert isinstance(workflow.body, chain)
    assert [task.args for task in workflow.body.tasks] == [[], [5]]


def test_group_of_one_in_a_chain_is_that_task(add: Any) -> None:
    workflow = add.s(1, 1) | group(add.s(2))
    assert [type(task).__name__ for task in workflow.tasks] == ["Signature", "Signature"]


def test_clone_prepends_args_unless_immutable(add: Any) -> None:
    assert add.s(2).clone((1,)).args == [1, 2]
    assert add.si(2, 3).clone((1,)).args == [2, 3]
    original = add.s(2).set(queue="q")
    copy = original.clone(priority=5)
    copy.options["queue"] = "other"
    assert original.options == {"queue": "q"}
    assert copy.options == {"queue": "other", "priority": 5}


def test_freeze_fixes_the_id_once_and_sets_reply_to(add: Any, app: Celeriac) -> None:
    sig = add.s(1)
    first = sig.freeze()
    assert sig.freeze().id == first.id == sig.id
    assert sig.options["reply_to"] == app.oid


def test_chain_freeze_links_each_result_to_its_parent(add: Any) -> None:
    workflow = chain(add.s(1, 1), add.s(2), add.s(3))
    last = workflow.freeze()
    ids = [task.id for task in workflow.tasks]
    assert last.id == ids[2]
    assert last.parent is not None
    assert last.parent.id == ids[1]
    assert workflow.options["task_id"] == ids[2]


def test_group_freeze_indexes_members(add: Any) -> None:
    workflow = group(add.s(1), add.s(2))
    result = workflow.freeze()
    assert isinstance(result, GroupResult)
    assert [task.options["group_index"] for task in workflow.tasks] == [0, 1]
    assert result.id_list == [task.id for task in workflow.tasks]


def test_signature_rebuilds_the_canvas_class_from_its_json(add: Any) -> None:
    workflow = chord([add.s(1), add.s(2) | add.s(3)], add.s() | add.s(1))
    rebuilt = signature(json.loads(json.dumps(workflow)))
    assert isinstance(rebuilt, chord)
    assert isinstance(rebuilt.tasks, group)
    assert isinstance(rebuilt.tasks.tasks[1], chain)
    assert isinstance(rebuilt.body, chain)
    assert json.dumps(rebuilt) == json.dumps(workflow)


def test_link_and_link_error_append_to_options(add: Any) -> None:
    sig = add.s(1)
    sig.link(add.s(2))
    sig.on_error(add.si(0))
    assert [item["args"] for item in sig.options["link"]] == [[2]]
    assert [item["immutable"] for item in sig.options["link_error"]] == [True]


def test_group_refuses_link_as_celery_does(add: Any) -> None:
    with pytest.raises(TypeError, match="use a chord"):
        group(add.s(1)).apply_async(link=add.s())


def test_map_starmap_and_chunks_carry_celerys_builtin_kwargs(add: Any) -> None:
    assert add.map([1, 2])["task"] == "celery.map"
    assert add.starmap([(1, 2)])["kwargs"]["it"] == [(1, 2)]
    parts = add.chunks([(1, 2), (3, 4), (5, 6)], 2)
    assert isinstance(parts, chunks)
    assert [member["kwargs"]["it"] for member in parts.group().tasks] == [[[1, 2], [3, 4]], [[5, 6]]]
    assert type(signature(json.loads(json.dumps(add.map([1]))))) is xmap
    assert type(signature(json.loads(json.dumps(add.starmap([(1, 2)]))))) is xstarmap


def test_builtin_tasks_run_celerys_semantics_locally(add: Any, app: Celeriac) -> None:
    task_dict = dict(add.s())
    assert app.tasks["celery.map"](task_dict, [1, 2]) == [1, 2]
    assert app.tasks["celery.starmap"](task_dict, [[1, 2], [3, 4]]) == [3, 7]
    assert app.tasks["celery.accumulate"](1, 2, 3, index=1) == 2
    assert app.tasks["celery.accumulate"](1, 2) == [1, 2]
    with pytest.raises(NotImplementedError):
        app.tasks["celery.chain"]()


def test_plain_signature_by_name_has_no_app_task(app: Celeriac) -> None:
    sig = Signature("remote.task", (1,), app=app)
    assert sig.name == "remote.task"
    assert repr(sig) == "remote.task.s(1)"


def test_always_eager_runs_whole_workflows_locally() -> None:
    app = Celeriac("eager", broker="redis://127.0.0.1:1/0", set_as_current=False, task_always_eager=True,
                   task_store_eager_result=False)  # fmt: skip

    @app.task(name="e.add")
    def add(x: int, y: int = 0) -> int:
        return x + y

    @app.task(name="e.tsum")
    def tsum(values: list[int]) -> int:
        return sum(values)

    result = (add.s(1, 1) | add.s(2)).apply_async()
    assert (result.get(), result.parent.get() if result.parent else None) == (4, 2)
    assert group(add.s(1, 1), add.s(2, 2)).apply_async().get() == [2, 4]
    assert chord([add.s(1, 1), add.s(2, 2)])(tsum.s()).get() == 6
    assert (add.s(1, 1) | group(add.s(1), add.s(2)) | tsum.s()).delay().get() == 7
    assert add.chunks([(1, 2), (3, 4), (5, 6)], 2).apply_async().get() == [[3, 7], [11]]

"""What the prefork pool pickles to and from its children survives the trip field for field
(TaskRequest and Outcome pickle as one tuple of their fields, see their ``__reduce__``)."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import datetime, timezone

from celeriac.protocol import TaskRequest
from celeriac.trace import Outcome
from celeriac.worker.jobs import Job, JobResult


def every_field_set() -> TaskRequest:
    when = datetime(2026, 11, 21, 9, 30, tzinfo=timezone.utc)
    return TaskRequest(
        id="id-1", task="tasks.add", args=(1, [2]), kwargs={"k": {"n": 1}},
        callbacks=[{"task": "cb"}], errbacks=[{"task": "eb"}], chain=[{"task": "next"}],
        chord={"task": "body"}, eta=when, expires=when, retries=3, root_id="root", parent_id="parent",
        group="group-1", group_index=2, timelimit=(10.0, 5.0), ignore_result=True, shadow="shadow",
        origin="gen@host", reply_to="reply", correlation_id="id-1", argsrepr="(1, [2])",
        kwargsrepr="{'k': {'n': 1}}", stamps={"s": 1}, stamped_headers=["s"], replaced_task_nesting=1,
        headers={"custom": "x"}, properties={"priority": 3}, content_type="application/x-msgpack",
        content_encoding="binary", protocol=1,
    )


def test_every_task_request_field_survives_pickling() -> None:
    request = every_field_set()
    defaults = TaskRequest("id-1", "tasks.add", (), {})
    changed = [f.name for f in dataclasses.fields(TaskRequest) if getattr(request, f.name) != getattr(defaults, f.name)]
    assert len(changed) == len(dataclasses.fields(TaskRequest)) - 2  # all but id and task differ from defaults
    assert pickle.loads(pickle.dumps(request, pickle.HIGHEST_PROTOCOL)) == request


def test_a_job_and_its_result_with_every_outcome_field_survive_pickling() -> None:
    job = Job(every_field_set(), {"exchange": "", "routing_key": "celery", "priority": 0, "redelivered": True},
              "w1@host", soft_time_limit_s=5.0, hard_time_limit_s=10.0, apply_here=True)
    assert pickle.loads(pickle.dumps(job, pickle.HIGHEST_PROTOCOL)) == job
    outcome = Outcome("RETRY", ValueError("boom"), traceback="Traceback ...", runtime_s=0.25,
                      children=(("c1", None),), retry={"countdown": 1}, requeue=True, exc_type="ValueError")
    unpickled = pickle.loads(pickle.dumps(outcome))
    assert [getattr(unpickled, f.name) for f in dataclasses.fields(Outcome) if f.name != "retval"] == [
        getattr(outcome, f.name) for f in dataclasses.fields(Outcome) if f.name != "retval"
    ]
    assert repr(unpickled.retval) == repr(outcome.retval)
    result = JobResult("id-1", "tasks.add", "RETRY", 0.25, outcome=outcome)
    assert pickle.loads(pickle.dumps(result)).outcome.exc_type == "ValueError"

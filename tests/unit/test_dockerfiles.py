"""worker/Dockerfile and operator/Dockerfile (not buildable here: no Docker) parse, are pinned, slim, non-root,
and start exactly what the operator's Deployments and the chart run."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomllib

from celeriac_operator.builders import beatschedule, workerpool
from celeriac_operator.models import BeatSchedule, WorkerPool
from celeriac_operator.queues import ResolvedQueues
from helm_support import find, render

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {"worker": REPO / "worker" / "Dockerfile", "operator": REPO / "operator" / "Dockerfile"}
BUILD_TOOLS = ("gcc", "g++", "clang", "make", "build-essential", "cmake", "rustc", "cargo", "apt-get", "apk",
               "-dev")


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str | None:
        values = [value for kw, value in self.instructions if kw == keyword]
        return values[-1] if values else None


def parse(text: str) -> list[Stage]:
    """Instructions (comments dropped, continuations joined) grouped into stages; ARG defaults substituted."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw.strip())
        pending = ""
    assert not pending, "a continuation line never ends"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, value = line.partition(" ")
        keyword = keyword.upper()
        assert keyword in {"ARG", "FROM", "ENV", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "ENTRYPOINT", "CMD",
                           "LABEL"}, f"unknown instruction {keyword}"
        value = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), value.strip())
        if keyword == "ARG" and not stages:
            name, _, default = value.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = value.split()
            stages.append(Stage(words[0], words[2] if len(words) == 3 and words[1].upper() == "AS" else None))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, value))
    return stages


def exec_form(value: str | None) -> list[str]:
    assert value is not None
    parsed = json.loads(value)
    assert isinstance(parsed, list), f"not exec form: {value}"
    return parsed


@pytest.fixture(params=sorted(DOCKERFILES))
def stages(request: pytest.FixtureRequest) -> list[Stage]:
    return parse(DOCKERFILES[request.param].read_text())


def test_every_stage_is_pinned_to_a_python_version_tag_and_a_digest(stages: list[Stage]) -> None:
    for stage in stages:
        match = re.fullmatch(r"python:(\d+\.\d+\.\d+)-slim-bookworm@sha256:[0-9a-f]{64}", stage.image)
        assert match, f"unpinned base image {stage.image}"
        requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
        assert tuple(map(int, match.group(1).split(".")[:2])) >= tuple(map(int, requires[2:].split(".")))


def test_two_stages_and_the_final_one_copies_only_the_built_virtualenv(stages: list[Stage]) -> None:
    build, final = stages
    assert build.name == "build"
    assert final.last("RUN") is None, "the final stage runs nothing (no package manager, no compiler)"
    copies = [value for kw, value in final.instructions if kw == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]
    words = " ".join(value for _, value in final.instructions).split()
    assert not [w for w in words if any(tool == w or (tool.startswith("-") and w.endswith(tool))
                                         for tool in BUILD_TOOLS)]
    assert "PATH=/opt/venv/bin:$PATH" in (final.last("ENV") or "")


def test_final_stage_runs_as_a_numeric_non_root_user_matching_the_operators_pods(stages: list[Stage]) -> None:
    from celeriac_operator.builders import common

    user = stages[-1].last("USER")
    assert user == f"{common.RUN_AS_ID}:{common.RUN_AS_ID}"
    (operator_deployment,) = find(render(), "Deployment")
    assert operator_deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == common.RUN_AS_ID


def test_the_build_stage_installs_the_project_with_the_extras_the_image_needs() -> None:
    worker_run = parse(DOCKERFILES["worker"].read_text())[0].last("RUN") or ""
    operator_run = parse(DOCKERFILES["operator"].read_text())[0].last("RUN") or ""
    assert "celeriac" in shlex.split(worker_run)
    assert "celeriac[operator]" in shlex.split(operator_run), "the operator needs kopf and pydantic"


def _pool() -> WorkerPool:
    return WorkerPool.from_body({"metadata": {"name": "p", "namespace": "ns"},
                                 "spec": {"queues": ["q"], "app": "tasks"}})


def test_worker_image_entrypoint_is_the_console_script_the_operator_commands_start_with() -> None:
    final = parse(DOCKERFILES["worker"].read_text())[-1]
    assert exec_form(final.last("ENTRYPOINT")) == ["celeriac"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["celeriac"] == "celeriac.cli:main"
    queues = ResolvedQueues(queue_names={"q": "q"}, secret_name="s", secret_key="url")
    worker_command = workerpool.command(_pool(), queues)
    schedule = BeatSchedule.from_body({"metadata": {"name": "b", "namespace": "ns"},
                                       "spec": {"entries": [{"name": "a", "task": "t", "queue": "q", "every": 5}]}})
    beat_command = beatschedule.command(schedule)
    assert worker_command[:2] == ["celeriac", "worker"]
    assert beat_command[:2] == ["celeriac", "beat"]


def test_operator_image_entrypoint_is_exactly_the_charts_operator_command() -> None:
    final = parse(DOCKERFILES["operator"].read_text())[-1]
    entrypoint = exec_form(final.last("ENTRYPOINT"))
    assert entrypoint == ["python", "-m", "celeriac_operator"]
    assert (REPO / "operator" / "celeriac_operator" / "__main__.py").is_file()
    (deployment,) = find(render(), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == entrypoint
    assert final.last("CMD") is None, "the chart passes every flag; no default arguments to mix with them"


def test_the_charts_default_worker_image_is_the_one_worker_dockerfile_documents() -> None:
    from celeriac_operator.settings import Settings

    assert f"-t {Settings().worker_image} " in DOCKERFILES["worker"].read_text()

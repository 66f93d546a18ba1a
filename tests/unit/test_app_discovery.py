"""Finding tasks: ``autodiscover_tasks``, ``include`` and Celery-style task names."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac import Celeriac


@pytest.fixture
def package(tmp_path: Path) -> Iterator[str]:
    """A throwaway package ``discoverme`` with a ``tasks`` module registering into the current app."""
    root = tmp_path / "discoverme"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "tasks.py").write_text(
        textwrap.dedent(
            """
            from celeriac import shared_task

            @shared_task
            def ping():
                return "pong"
            """
        )
    )
    (tmp_path / "plainmod.py").write_text(
        "from celeriac import shared_task\n\n@shared_task\ndef hello():\n    return 1\n"
    )
    sys.path.insert(0, str(tmp_path))
    yield "discoverme"
    sys.path.remove(str(tmp_path))
    for name in ("discoverme", "discoverme.tasks", "plainmod"):
        sys.modules.pop(name, None)


def test_autodiscover_imports_package_tasks_on_first_registry_use(package: str) -> None:
    app = Celeriac("disc", set_as_current=False, task_always_eager=True)
    app.autodiscover_tasks([package, "json"])  # json has no tasks module: skipped
    assert "discoverme.tasks" not in sys.modules
    assert app.tasks["discoverme.tasks.ping"].delay().get() == "pong"


def test_include_modules_are_imported_when_the_registry_is_first_used(package: str) -> None:
    app = Celeriac("inc", include=["plainmod"], set_as_current=False)
    assert "plainmod.hello" in app.tasks


def test_tasks_defined_in_main_are_named_after_the_app() -> None:
    app = Celeriac("proj", set_as_current=False)

    def job() -> None:
        return None

    job.__module__ = "__main__"
    assert app.task(job).name == "proj.job"

"""CLI pure logic: finding the app like Celery's -A, and argument parsing."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from celeriac.app import Celeriac
from celeriac.cli import UsageError, _health_port, build_parser, load_app


def write_module(directory: Path, name: str, body: str) -> None:
    (directory / f"{name}.py").write_text("from celeriac import Celeriac\n" + body)


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_module_colon_attribute_names_the_app(modules: Path) -> None:
    write_module(modules, "m_attr", "mine = Celeriac('m_attr')\n")
    app = load_app("m_attr:mine")
    assert isinstance(app, Celeriac)
    assert app.main == "m_attr"


def test_bare_module_uses_app_then_celery_then_the_only_instance(modules: Path) -> None:
    write_module(modules, "m_app", "app = Celeriac('first')\nother = Celeriac('second')\n")
    write_module(modules, "m_celery", "celery = Celeriac('named_celery')\n")
    write_module(modules, "m_single", "whatever = Celeriac('only')\n")
    assert load_app("m_app").main == "first"
    assert load_app("m_celery").main == "named_celery"
    assert load_app("m_single").main == "only"


def test_ambiguous_or_missing_apps_are_usage_errors(modules: Path) -> None:
    write_module(modules, "m_two", "a = Celeriac('a')\nb = Celeriac('b')\n")
    write_module(modules, "m_none", "x = 1\n")
    with pytest.raises(UsageError, match="holds 2 apps"):
        load_app("m_two")
    with pytest.raises(UsageError, match="no app found in module 'm_none'"):
        load_app("m_none")
    with pytest.raises(UsageError, match="has no attribute 'y'"):
        load_app("m_none:y")
    with pytest.raises(UsageError, match="cannot import app module 'not_a_module_here'"):
        load_app("not_a_module_here")


def test_no_app_gives_a_bare_app() -> None:
    assert isinstance(load_app(None), Celeriac)


def test_health_port_accepts_numbers_zero_and_off() -> None:
    assert _health_port("9808") == 9808
    assert _health_port("0") == 0
    assert _health_port("off") is None
    with pytest.raises(argparse.ArgumentTypeError, match="out of range"):
        _health_port("70000")
    with pytest.raises(argparse.ArgumentTypeError, match="not a port number"):
        _health_port("http")


def test_worker_flags_parse_like_celery() -> None:
    args = build_parser().parse_args(
        ["worker", "-A", "proj:app", "-Q", "a,b", "-c", "3", "--pool", "threads", "--prefetch-multiplier", "2",
         "-l", "INFO", "-E", "--health-port", "0", "--hostname", "w1@h"]
    )
    assert (args.app, args.queues, args.concurrency, args.pool, args.prefetch_multiplier) == (
        "proj:app", "a,b", 3, "threads", 2
    )
    assert (args.loglevel, args.events, args.health_port, args.hostname) == ("info", True, 0, "w1@h")


def test_app_flag_works_before_or_after_the_subcommand() -> None:
    assert build_parser().parse_args(["-A", "x", "result", "id"]).app == "x"
    assert build_parser().parse_args(["result", "id", "-A", "y"]).app == "y"
    assert not hasattr(build_parser().parse_args(["result", "id"]), "app")


def test_unknown_pool_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["worker", "--pool", "eventlet"])
    assert exited.value.code == 2
    assert "invalid choice: 'eventlet'" in capsys.readouterr().err

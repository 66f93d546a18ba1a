"""``celeriac beat`` usage errors: one line, exit 2, before anything connects."""

from __future__ import annotations

from pathlib import Path

import pytest

from celeriac.cli import main


@pytest.fixture
def beat_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "beatcli.py").write_text(
        "from celeriac import Celeriac\n"
        "app = Celeriac('beatcli')\n"
        "app.conf.beat_schedule = {'tick': {'task': 't', 'schedule': 1.0}}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CELERIAC_BEAT_QUEUES", raising=False)
    return "beatcli"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["beat", "--standalone", "--lease", "ns/x"], "--standalone runs without a Lease"),
        (["beat", "--from-resource", "nonamespace"], "--from-resource expects NAMESPACE/NAME"),
        (["beat", "--from-resource", "ns/a/b"], "--from-resource expects NAMESPACE/NAME"),
        (["beat", "--standalone"], "no beat_schedule entries"),
        (["-A", "{app}", "beat", "--standalone", "--renew-deadline", "20"], "retry period"),
        (["-A", "{app}", "beat", "--lease", "justaname"], "--lease expects NAMESPACE/NAME"),
    ],
)
def test_bad_beat_input_exits_2_with_one_clear_line(
    beat_app: str, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main([arg.format(app=beat_app) for arg in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1


def test_bad_beat_queues_json_is_a_usage_error(
    beat_app: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELERIAC_BEAT_QUEUES", '["not", "an object"]')
    assert main(["-A", beat_app, "beat", "--standalone"]) == 2
    assert "CELERIAC_BEAT_QUEUES must be a JSON object" in capsys.readouterr().err


def test_beat_schedule_error_names_the_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "badbeat.py").write_text(
        "from celeriac import Celeriac\n"
        "app = Celeriac('badbeat')\n"
        "app.conf.beat_schedule = {'nightly': {'task': 't', 'schedule': 'sometimes'}}\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["-A", "badbeat", "beat", "--standalone"]) == 2
    assert "beat_schedule['nightly']" in capsys.readouterr().err

"""``celeriac schedule next``: fire times in the zone and UTC, and one-line errors with exit status 2."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from celeriac.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(["schedule", "next", *argv])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_prints_local_and_utc_times_across_the_spring_gap(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = run(capsys, "30 2 * * *", "--tz", "America/New_York", "--after", "2026-03-07", "-n", "3")
    assert (code, err) == (0, "")
    assert lines == [
        "2026-03-07T02:30:00-05:00  2026-03-07T07:30:00Z",
        "2026-03-08T03:00:00-04:00  2026-03-08T07:00:00Z",
        "2026-03-09T02:30:00-04:00  2026-03-09T06:30:00Z",
    ]


def test_an_interval_prints_epoch_aligned_slots(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = run(capsys, "90", "--after", "2026-01-01T00:00:00Z", "-n", "2")
    assert code == 0
    assert lines == [
        "2026-01-01T00:01:30+00:00  2026-01-01T00:01:30Z",
        "2026-01-01T00:03:00+00:00  2026-01-01T00:03:00Z",
    ]
    _, lines, _ = run(capsys, "5m", "--tz", "Asia/Kathmandu", "--after", "2026-01-01T00:00:00+00:00", "-n", "1")
    assert lines == ["2026-01-01T05:50:00+05:45  2026-01-01T00:05:00Z"]


def test_macros_and_a_naive_after_are_read_in_the_zone(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = run(capsys, "@daily", "--tz", "Pacific/Chatham", "--after", "2026-06-01T12:00", "-n", "1")
    assert code == 0
    assert lines == ["2026-06-02T00:00:00+12:45  2026-06-01T11:15:00Z"]


def test_an_offset_after_is_an_instant_in_any_zone(capsys: pytest.CaptureFixture[str]) -> None:
    _, lines, _ = run(capsys, "0 * * * *", "--tz", "Europe/London", "--after", "2026-07-01T09:30:00+02:00", "-n", "1")
    assert lines == ["2026-07-01T09:00:00+01:00  2026-07-01T08:00:00Z"]


def test_defaults_to_five_times_after_now(capsys: pytest.CaptureFixture[str]) -> None:
    before = datetime.now(timezone.utc)
    code, lines, _ = run(capsys, "* * * * *")
    assert code == 0
    assert len(lines) == 5
    first_utc = datetime.fromisoformat(lines[0].split()[1].replace("Z", "+00:00"))
    assert first_utc > before


def test_a_thousand_lines_is_the_most(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = run(capsys, "@hourly", "-n", "1000", "--after", "2026-01-01T00:00Z")
    assert code == 0
    assert len(lines) == 1000


@pytest.mark.parametrize(("argv", "message"), [
    (["0 25 * * *"], "cron '0 25 * * *': field 2 (hour) value 25 is out of range 0-23"),
    (["0 9 * *"], "expected 5 fields"),
    (["@daily", "--tz", "Foo/Bar"], "unknown time zone 'Foo/Bar': use an IANA name such as Europe/London"),
    (["5x"], "'5x' is neither a cron expression"),
    (["*"], "'*' is neither a cron expression"),
    (["0s"], "at least 1 second"),
    (["@daily", "--after", "yesterday"], "--after 'yesterday' is not an ISO 8601 time"),
    (["@daily", "-n", "0"], "-n '0': give a whole number from 1 to 1000"),
    (["@daily", "-n", "1001"], "-n '1001'"),
    (["@daily", "-n", "many"], "-n 'many'"),
])
def test_mistakes_print_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str],
                                            message: str) -> None:
    code, lines, err = run(capsys, *argv)
    assert code == 2
    assert lines == []
    assert err.count("\n") == 1
    assert err.startswith("celeriac: error: ")
    assert message in err
    assert "Traceback" not in err

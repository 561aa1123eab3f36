"""hftctl logs: the end of a daemon's log, readable or raw, and -f across rotations."""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from support.follow import Follow

from hft.ctl.cli import main
from hft.daemons.runtime.logs import configure_logging


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / "log").mkdir(parents=True)
    monkeypatch.setenv("HFT_HOME", str(home))
    return home


def hftctl(*args: str) -> Result:
    return CliRunner().invoke(main, ["logs", *args])


def write_runtime_log(path: Path) -> None:
    """Lines written by the daemons' own logging set-up (python-json-logger)."""
    handlers = configure_logging("engine", stderr=False, file=path)
    log = logging.getLogger("hft.test")
    try:
        log.info("plugin loaded", extra={"plugin": "tick", "spec": "a b.py", "lots": 3})
        try:
            raise ValueError("bad price")
        except ValueError:
            log.exception("handler failed", extra={"plugin": "tick"})
        log.warning("exchange said \x1b[2Jhello")  # a terminal escape from outside
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()


def test_a_daemons_json_lines_are_shown_readable(home: Path) -> None:
    log = home / "log" / "engine.log"
    write_runtime_log(log)
    with log.open("a") as file:
        file.write("Fatal Python error: Segmentation fault\n")
    shown = hftctl("engine")
    assert shown.exit_code == 0, shown.output
    pid = os.getpid()
    lines = shown.output.splitlines()
    timestamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00"
    assert re.fullmatch(rf'{timestamp} INFO     hft\.test\[{pid}\]: plugin loaded plugin=tick '
                        r'spec="a b\.py" lots=3', lines[0]), lines[0]
    assert re.fullmatch(rf"{timestamp} ERROR    hft\.test\[{pid}\]: handler failed plugin=tick",
                        lines[1]), lines[1]
    assert lines[2] == "    Traceback (most recent call last):"
    assert "    ValueError: bad price" in lines[3:]
    warning = next(line for line in lines if "exchange said" in line)
    assert warning.endswith(r"exchange said \x1b[2Jhello") and "\x1b" not in shown.output
    assert lines[-1] == "Fatal Python error: Segmentation fault"


def test_raw_prints_the_lines_as_they_are(home: Path) -> None:
    log = home / "log" / "engine.log"
    write_runtime_log(log)
    shown = hftctl("engine", "--raw")
    assert shown.exit_code == 0
    assert shown.output == log.read_text()


def test_the_last_n_lines_of_a_large_log(home: Path) -> None:
    log = home / "log" / "risk.log"
    lines = [f'{{"message": "line {n}", "pad": "{"x" * (n % 97)}"}}' for n in range(20_000)]
    log.write_text("\n".join(lines) + "\n")  # ~1.5 MB: read backwards over many blocks
    assert hftctl("risk", "--raw", "-n", "5000").output.splitlines() == lines[-5000:]
    assert hftctl("risk", "--raw").output.splitlines() == lines[-50:]
    assert hftctl("risk", "--raw", "-n", "0").output == ""
    assert hftctl("risk", "--raw", "-n", "30000").output.splitlines() == lines


def test_a_line_being_written_counts_as_the_last(home: Path) -> None:
    (home / "log" / "monitor.log").write_text("one\ntwo\nthr")
    assert hftctl("monitor", "-n", "2").output.splitlines() == ["two", "thr"]
    assert hftctl("monitor", "-n", "1").output.splitlines() == ["thr"]


def test_a_missing_log_is_one_line_naming_its_path(home: Path) -> None:
    shown = hftctl("hft_md")
    assert shown.exit_code == 1
    assert shown.output == (f"Error: hft_md has no log at {home / 'log' / 'hft_md.log'} "
                            "(has it ever been started with this config?)\n")
    watchdog = hftctl("watchdog")
    assert watchdog.exit_code == 1 and "journalctl -u hft-watchdog" in watchdog.output
    unknown = hftctl("nothing")
    assert unknown.exit_code == 2 and "'nothing' is not one of" in unknown.output


@pytest.fixture
def follow() -> Iterator[list[Follow]]:
    started: list[Follow] = []
    yield started
    for running in started:
        running.kill()


def append(path: Path, text: str) -> None:
    with path.open("a") as file:  # O_APPEND, as the daemons' output
        file.write(text)


def test_follow_goes_on_through_copytruncate_and_rename(home: Path,
                                                      follow: list[Follow]) -> None:
    log = home / "log" / "engine.log"
    log.write_text("old-1\nold-2\nold-3\n")
    follower = Follow("engine", "--raw", "-n", "2")
    follow.append(follower)
    follower.shows("old-3")
    append(log, "a-1\n")
    follower.shows("a-1")
    append(log, "a-2 part")
    append(log, "ial\n")
    follower.shows("a-2 partial")
    append(log, "b-0\n")  # just before logrotate's copytruncate: its copy keeps it
    shutil.copyfile(log, log.with_name("engine.log.1"))
    os.truncate(log, 0)
    append(log, "b-1\n")
    follower.shows("b-1")
    append(log, "c-1\n")
    log.rename(log.with_name("engine.log.1"))  # logrotate without copytruncate
    append(log.with_name("engine.log.1"), "c-2\n")  # the writer still holds the old file
    log.write_text("d-1\n")
    follower.shows("d-1")
    append(log, "d-2\n")
    follower.shows("d-2")
    status, stderr = follower.interrupt()
    assert (status, stderr) == (0, "")
    assert follower.lines == ["old-2", "old-3", "a-1", "a-2 partial", "b-0", "b-1", "c-1",
                              "c-2", "d-1", "d-2"]


def test_follow_takes_no_line_from_a_copy_that_is_not_its_files(home: Path,
                                                                 follow: list[Follow]) -> None:
    log = home / "log" / "engine.log"
    log.write_text("mine-1\n")
    follower = Follow("engine", "--raw")
    follow.append(follower)
    follower.shows("mine-1")
    log.with_name("engine.log.1").write_text("other-1\nother-2\nother-3\n")
    os.truncate(log, 0)  # a bare truncation, beside a copy of something else
    append(log, "mine-2\n")
    follower.shows("mine-2")
    assert follower.interrupt() == (0, "")
    assert follower.lines == ["mine-1", "mine-2"]

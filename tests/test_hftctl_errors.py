"""Every hftctl command reports a failure as one line, ``Error: ...``, and exit status 1,
never a traceback: run through the real command line (``python -m hft.ctl``), with nothing
running, on bad configs, token files, journals, tick files and an unusable home."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest
from support.sample_data import IF_DAY

import hft

REPO = Path(__file__).resolve().parents[1]
SUITE = "[daemons.risk]\nenabled = false\n[daemons.monitor]\nenabled = false\n"
TRADING = "[daemons.risk]\nmetrics_port = 0\n[daemons.risk.plugins.desk]\nspec = \"order_desk\"\n"


def hftctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hft.ctl", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def suite(tmp_path: Path, body: str = SUITE, home: Path | None = None) -> str:
    path = tmp_path / "suite.toml"
    path.write_text(f'[paths]\nhome = "{home or tmp_path / "home"}"\n{body}')
    return str(path)


def bad_config(tmp_path: Path) -> str:
    return suite(tmp_path, "[daemons.engine]\nmetrics_port = -1\nspin_us = -5\n")


def csv_file(tmp_path: Path) -> str:
    path = tmp_path / "bad.csv"
    path.write_text("TradingDay,UpdateTime,InstrumentID,LastPrice,Volume\n"
                    "20210105,09:30:00,IF2101,oops,1\n")
    return str(path)


def home_is_a_file(tmp_path: Path) -> str:
    (tmp_path / "file").write_text("")
    return suite(tmp_path, home=tmp_path / "file")


CASES: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    # name: (arguments for a tmp_path, what the one line must contain)
    "start, bad config": (lambda t: ["start", "--config", bad_config(t)],
                          "daemons.engine.metrics_port: "),
    "stop, bad config": (lambda t: ["stop", "--config", bad_config(t)], "; daemons.engine.spin_us"),
    "status, bad config": (lambda t: ["status", "--config", bad_config(t)], "invalid config"),
    "restart, bad config": (lambda t: ["restart", "--config", bad_config(t), "engine"],
                            "daemons.engine.metrics_port: "),
    "start, home is a file": (lambda t: ["start", "--config", home_is_a_file(t), "engine"],
                              "file"),
    "plugins list": (lambda t: ["plugins", "list", "--config", suite(t), "engine"],
                     "engine: UNAVAILABLE: "),
    "plugins load": (lambda t: ["plugins", "load", "--config", suite(t), "engine", "x", "replay"],
                     "engine: UNAVAILABLE: "),
    "plugins unload": (lambda t: ["plugins", "unload", "--config", suite(t), "engine", "x"],
                       "engine: UNAVAILABLE: "),
    "plugins reload": (lambda t: ["plugins", "reload", "--config", suite(t), "engine", "x"],
                       "engine: UNAVAILABLE: "),
    "plugins command": (lambda t: ["plugins", "command", "--config", suite(t), "engine", "x",
                                   "list"], "engine: UNAVAILABLE: "),
    "plugins, missing token file": (lambda t: ["plugins", "--connect", "127.0.0.1:9",
                                               "--token-file", str(t / "none"), "list", "engine"],
                                    "none"),
    "import-ticks, bad file": (lambda t: ["import-ticks", csv_file(t), "--journal", str(t)],
                               "is not a number; nothing was imported"),
    "ticks, no journal": (lambda t: ["ticks", "--journal", str(t), "--instrument", "IF2101"],
                          "no such journal file"),
    "bars, no journal": (lambda t: ["bars", "--journal", str(t), "--instrument", "IF2101"],
                         "no such journal file"),
    "bars, unknown product": (lambda t: ["bars", "--journal", str(t), "--instrument", "ZZ2101"],
                              "ZZ"),
    "orders, no risk daemon in the config": (lambda t: ["orders", "--config", suite(t)],
                                             "loads no 'order_desk' plugin"),
    "orders, the risk daemon never ran": (lambda t: ["orders", "--config", suite(t, TRADING)],
                                          "the risk daemon has not run with this config yet"),
    "cancel, risk not running": (lambda t: ["cancel", "7", "--config", suite(t, TRADING)],
                                 "risk: UNAVAILABLE: "),
    "risk set, risk not running": (lambda t: ["risk", "set", "default", "max_order_volume", "2",
                                              "--config", suite(t, TRADING)],
                                   "risk: UNAVAILABLE: "),
}


@pytest.mark.parametrize("case", CASES)
def test_a_failing_command_says_why_in_one_line(case: str, tmp_path: Path) -> None:
    arguments, expected = CASES[case]
    done = hftctl(*arguments(tmp_path))
    assert (done.returncode, done.stdout) == (1, ""), done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("Error: ") and expected in line, line


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """``hftctl ticks ... | head -1``: the closed pipe ends the command quietly."""
    assert hftctl("import-ticks", str(IF_DAY), "--journal", str(tmp_path)).returncode == 0
    with subprocess.Popen([sys.executable, "-m", "hft.ctl", "ticks", "--journal", str(tmp_path),
                           "--instrument", "IF2101"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline().startswith("TradingDay,")
        process.stdout.close()
        stderr = process.stderr.read()
    assert (process.returncode, stderr) == (1, "")


def test_the_version_has_one_home() -> None:
    """pyproject.toml's version, read back from the installed metadata by hft and hftctl."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert hft.__version__ == version("hft") == declared
    done = hftctl("--version")
    assert (done.returncode, done.stdout) == (0, f"hftctl, version {declared}\n")

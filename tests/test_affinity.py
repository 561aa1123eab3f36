"""daemons.NAME.cpu_affinity: a daemon started with it runs on those CPUs only, every thread of
it, and says so when it starts; a CPU the machine lacks is refused naming the key."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from support.daemons import Daemon, write_config

from hft.daemons.runtime.config import ConfigError, load_config

StartDaemon = Callable[[str, Path], Daemon]
LAST_CPU = max(os.sched_getaffinity(0))
"""Pinned to the last CPU this process may use: a set that differs from the default (all
of them) wherever it may use two or more."""


def test_a_pinned_daemon_runs_on_its_cpus_only(start_daemon: StartDaemon,
                                               tmp_path: Path) -> None:
    daemon = start_daemon("engine", write_config(tmp_path, f"""
[daemons.engine]
metrics_port = 0
cpu_affinity = [{LAST_CPU}]
"""))
    process = psutil.Process(daemon.process.pid)
    assert process.cpu_affinity() == [LAST_CPU]
    threads = process.threads()
    assert len(threads) > 1  # gRPC and /metrics started after the pinning, and inherit it
    assert {tuple(psutil.Process(thread.id).cpu_affinity()) for thread in threads} \
        == {(LAST_CPU,)}
    [started] = [line for line in daemon.logs() if line["message"] == "daemon started"]
    assert started["cpu_affinity"] == [LAST_CPU]


def test_an_unpinned_daemon_reports_every_cpu_it_may_use(start_daemon: StartDaemon,
                                                         tmp_path: Path) -> None:
    daemon = start_daemon("risk", write_config(tmp_path, "[daemons.risk]\nmetrics_port = 0\n"))
    [started] = [line for line in daemon.logs() if line["message"] == "daemon started"]
    assert started["cpu_affinity"] == sorted(os.sched_getaffinity(0))


@pytest.mark.parametrize(("cpus", "reason"), [
    (f"[{os.cpu_count()}]", f"CPU {os.cpu_count()} is not one of this machine's"),
    ("[-1]", "CPU -1 is not one of this machine's"),
    ("[0, 0]", "a CPU is listed twice"),
    ("[]", "at least 1 item"),
    ('["0"]', "valid integer"),
])
def test_a_bad_cpu_list_is_refused_naming_the_key(tmp_path: Path, cpus: str,
                                                  reason: str) -> None:
    path = write_config(tmp_path, f"[daemons.engine]\nmetrics_port = 0\ncpu_affinity = {cpus}\n")
    with pytest.raises(ConfigError, match=r"daemons\.engine\.cpu_affinity") as caught:
        load_config(path)
    assert reason in str(caught.value)


def test_a_daemon_given_a_cpu_the_machine_lacks_does_not_start(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"[daemons.engine]\nmetrics_port = 0\n"
                                  f"cpu_affinity = [{os.cpu_count()}]\n")
    finished = subprocess.run([sys.executable, "-m", "hft.daemons", "engine", "--config",
                               str(path)], capture_output=True, timeout=60, check=False)
    assert finished.returncode != 0
    assert b"daemons.engine.cpu_affinity" in finished.stderr

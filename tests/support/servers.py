"""A third-party server the tests start (Prometheus, Alertmanager): its process on a free
port with its output in a log file, a check that it still runs, and a stop that always ends
it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from support.suite import free_port


class ServerProcess:
    """``command(port)`` started on a free 127.0.0.1 port, its output in ``directory/NAME.log``."""

    def __init__(self, name: str, directory: Path, command: Callable[[int], list[str]]) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = directory / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command(self.port), stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=log)

    def check_running(self) -> None:
        """Fail, with the end of its log, if the server has exited."""
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

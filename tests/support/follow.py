"""``hftctl logs -f`` in a real process, its output lines collected as they come."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

from support.daemons import wait_for


class Follow:
    """``hftctl logs -f ARGS...``: ``lines`` grows as the command prints; ``interrupt`` is
    Ctrl-C."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hft.ctl", "logs", "-f", *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_as_in_a_terminal)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def shows(self, line: str) -> None:
        wait_for(lambda: line in self.lines, f"hftctl logs -f to show {line!r} "
                                             f"(shown: {self.lines})")

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: the exit status and what went to stderr."""
        self.process.send_signal(signal.SIGINT)
        _, stderr = self.process.communicate(timeout=10)
        self._reader.join(timeout=10)
        return self.process.returncode, stderr

    def kill(self) -> None:
        """End it if a failed test left it running."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _ctrl_c_as_in_a_terminal() -> None:
    """SIGINT to its default, as in a terminal: a test run started in the background (``&``
    in a script) ignores it, and the command would inherit that and never see its Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

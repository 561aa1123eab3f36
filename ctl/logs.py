"""``hftctl logs``: the end of a daemon's log, and with ``-f`` its new lines as they come.

The daemons (and the watchdog) write JSON lines (python-json-logger) to <home>/log/NAME.log.
By default each is shown as one readable line, ``time level logger[pid]: message key=value``
with a traceback indented below it; ``--raw`` prints the JSON as it is, for ``jq``. A line
that is not a JSON object (a crash before logging was set up) is shown as it is.

Following survives log rotation (ops/logrotate/hft). After a copytruncate the file is
shorter than what was read, or no longer holds the bytes last read: what was written after
the last read and before the truncation is taken from logrotate's copy (``NAME.log.1``, left
uncompressed by ``delaycompress``; known by the bytes before that point being the ones read
here), then the file is read again from its start. After a rename the path names a new
file: the old one is read to its end first, then the new one from its start.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import click

from hft.ctl.options import config_option
from hft.daemons.runtime.config import DAEMON_NAMES, WATCHDOG, load_config

FOLLOW_POLL_S = 0.1
"""How often ``-f`` looks for new lines (and for a rotation)."""
_BLOCK = 64 * 1024
_FINGERPRINT = 256
"""How many of the last bytes read identify the file in logrotate's copy of it."""
_NEWLINE = b"\n"
_HEAD_FIELDS = ("time", "level", "logger", "pid", "message")
_TRACE_FIELDS = ("exc_info", "stack_info")
_NOT_EXTRAS = frozenset((*_HEAD_FIELDS, *_TRACE_FIELDS, "daemon"))
_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7f, 0xa0))
                    if code != ord("\t")}
"""Terminal control characters (ESC starts a sequence that can rewrite the screen), shown
escaped: a message may carry text from outside (an exchange's error, an instrument name)."""


def last_lines(file: BinaryIO, count: int) -> tuple[list[bytes], bytes]:
    """The last ``count`` lines of ``file``: the complete ones, and the unterminated text
    after them (a line being written, counted as one), read backwards in blocks so a large
    log costs what its end does. Leaves ``file`` at its end."""
    end = file.seek(0, os.SEEK_END)
    start = end
    blocks: list[bytes] = []
    newlines = 0
    while start > 0 and newlines <= count:  # count + 1 newlines bound count whole lines
        size = min(_BLOCK, start)
        start -= size
        file.seek(start)
        block = file.read(size)
        blocks.append(block)
        newlines += block.count(_NEWLINE)
    file.seek(end)
    *lines, partial = b"".join(reversed(blocks)).split(_NEWLINE)
    if start > 0:
        lines = lines[1:]  # the first one begins before what was read
    complete = count - 1 if partial else count
    return (lines[-complete:] if complete > 0 else []), partial


class Follower:
    """The lines appended to a log file since the last :meth:`poll`, across rotations."""

    def __init__(self, path: Path, file: BinaryIO, pending: bytes = b"") -> None:
        self.path = path
        self.file = file
        self.pending = pending
        """Text read after the last newline: the start of a line still being written."""
        position = file.tell()
        file.seek(max(0, position - _FINGERPRINT))
        self.recent = file.read(position - file.tell())
        """The last bytes read of this file (up to _FINGERPRINT, never more than its
        position): to see a truncation, and to recognise them in the rotated copy."""

    def poll(self) -> list[bytes]:
        """The complete lines written since the last call (a rotated file's last ones
        first)."""
        lines = self._read()
        try:
            on_disk = self.path.stat()
        except FileNotFoundError:
            return lines  # renamed away and its successor not created yet: look again later
        reading = os.fstat(self.file.fileno())
        if (on_disk.st_dev, on_disk.st_ino) != (reading.st_dev, reading.st_ino):
            lines += self._read() + self._flush_pending()
            self.file.close()
            self.file = self.path.open("rb")
            self.recent = b""
            lines += self._read()
        elif self._truncated(reading.st_size):  # in place (copytruncate)
            lines += self._from_copy(self.file.tell()) + self._flush_pending()
            self.file.seek(0)
            self.recent = b""
            lines += self._read()
        return lines

    def close(self) -> None:
        self.file.close()

    def _read(self) -> list[bytes]:
        return self._lines(self.file.read())

    def _lines(self, data: bytes) -> list[bytes]:
        """The complete lines ``data`` ends (the pending start of one first)."""
        if data:
            self.recent = (self.recent + data)[-_FINGERPRINT:]
        *lines, self.pending = (self.pending + data).split(_NEWLINE)
        return lines

    def _truncated(self, size: int) -> bool:
        """Shorter than what was read, or no longer holding the bytes last read before the
        position (truncated, then written past it between two polls)."""
        position = self.file.tell()
        return size < position or os.pread(self.file.fileno(), len(self.recent),
                                           position - len(self.recent)) != self.recent

    def _from_copy(self, position: int) -> list[bytes]:
        """The lines written after ``position`` and before a truncation, from the copy
        logrotate made first, if there is one whose bytes before ``position`` are the ones
        read here (else they are lost to this view, as to ``tail -F``)."""
        try:
            with self.path.with_name(self.path.name + ".1").open("rb") as copy:
                copy.seek(position - len(self.recent))
                if copy.read(len(self.recent)) != self.recent:
                    return []
                return self._lines(copy.read())
        except OSError:  # no copy (compressed at once, or another naming), or unreadable
            return []

    def _flush_pending(self) -> list[bytes]:
        """The unterminated end of a file given up on, as a line of its own."""
        line, self.pending = self.pending, b""
        return [line] if line else []


def readable(line: bytes) -> str:
    """One log line for a person: a JSON record as ``time level logger[pid]: message k=v``
    (and its traceback indented below), anything else as it is; control characters
    escaped either way."""
    text = line.decode("utf-8", errors="replace")
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict) or "message" not in record:
        return _printable(text)
    time_, level, logger, pid, message = (str(record.get(field, "-")) for field in _HEAD_FIELDS)
    parts = [f"{time_} {level:<8} {logger}[{pid}]: {message}"]
    parts += [f"{key}={_value(value)}" for key, value in record.items()
              if key not in _NOT_EXTRAS]
    rendered = [_printable(" ".join(parts))]
    for field in _TRACE_FIELDS:
        if record.get(field):
            rendered += ["    " + _printable(trace) for trace in str(record[field]).splitlines()]
    return "\n".join(rendered)


def _value(value: Any) -> str:
    """An extra's value: a plain word as it is, anything else as JSON (quoted, so spaces and
    ``=`` inside cannot be mistaken for the next key)."""
    if isinstance(value, str) and value and not any(c.isspace() or c in '="' for c in value):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _printable(text: str) -> str:
    return text.translate(_CONTROL_ESCAPES)


def _render(raw: bool) -> Callable[[bytes], str]:
    if raw:
        return lambda line: line.decode("utf-8", errors="replace")
    return readable


@click.command("logs")
@config_option
@click.option("-n", "--lines", "count", type=click.IntRange(min=0), default=50,
              show_default=True, help="How many of the last lines to show.")
@click.option("-f", "--follow", is_flag=True,
              help="Then show new lines as they are written, across log rotations, until "
                   "Ctrl-C.")
@click.option("--raw", is_flag=True, help="The JSON lines as they are.")
@click.argument("name", type=click.Choice((*DAEMON_NAMES, WATCHDOG)))
def logs_command(config_file: Path | None, count: int, follow: bool, raw: bool,
                 name: str) -> None:
    """Show the last lines of NAME's log (<home>/log/NAME.log), readable or --raw."""
    path = load_config(config_file).output_log_path(name)
    try:
        file = path.open("rb")
    except FileNotFoundError:
        hint = (" (under systemd its log is the journal's: journalctl -u hft-watchdog)"
                if name == WATCHDOG else " (has it ever been started with this config?)")
        raise click.ClickException(f"{name} has no log at {path}{hint}") from None
    render = _render(raw)
    lines, partial = last_lines(file, count)
    for line in lines:
        click.echo(render(line))
    if not follow:
        file.close()
        if partial and count:
            click.echo(render(partial))
        return
    follower = Follower(path, file, partial)
    try:
        while True:
            for line in follower.poll():
                click.echo(render(line))
            time.sleep(FOLLOW_POLL_S)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how following ends
    finally:
        follower.close()

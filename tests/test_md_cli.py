"""hftctl import-ticks / ticks end to end, through the real command line."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

from support.sample_data import IF_DAY

from hft.daemons.runtime.journal import JournalReader


def hftctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hft.ctl", *args], capture_output=True, text=True,
                          timeout=120)


def last_seq(directory: Path, name: str = "md") -> int:
    with JournalReader(directory, name, start="end") as reader:
        return reader.next_seq - 1


def test_import_then_print_the_real_if_day(tmp_path: Path) -> None:
    imported = hftctl("import-ticks", str(IF_DAY), "--journal", str(tmp_path))
    assert imported.returncode == 0, imported.stderr
    assert "imported 27955 ticks" in imported.stdout and "trading days 20210104" in imported.stdout
    printed = hftctl("ticks", "--journal", str(tmp_path), "--instrument", "IF2101")
    assert printed.returncode == 0, printed.stderr
    rows = list(csv.DictReader(io.StringIO(printed.stdout)))
    with IF_DAY.open() as handle:
        source = list(csv.DictReader(handle))
    assert len(rows) == len(source)
    assert rows[0]["LocalTime"] == "2021-01-04 09:29:00.400"
    assert rows[0]["TimestampNs"] == "1609723740400000000"
    assert [r["Volume"] for r in rows] == [s["Volume"] for s in source]
    assert [float(r["LastPrice"]) for r in rows] == [float(s["LastPrice"]) for s in source]


def test_a_bad_file_imports_nothing(tmp_path: Path) -> None:
    assert hftctl("import-ticks", str(IF_DAY), "--journal", str(tmp_path)).returncode == 0
    before = last_seq(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("TradingDay,UpdateTime,InstrumentID,LastPrice,Volume\n"
                   "20210105,09:30:00,IF2101,5300,1\n20210105,09:30:01,IF2101,oops,2\n")
    newer = tmp_path / "newer.csv"
    newer.write_text("TradingDay,UpdateTime,InstrumentID,LastPrice,Volume\n"
                     "20210105,09:30:00,IF2101,5300,1\n")
    refused = hftctl("import-ticks", str(newer), str(bad), "--journal", str(tmp_path))
    assert refused.returncode == 1
    assert f"{bad}:3: LastPrice='oops' is not a number" in refused.stderr
    assert "nothing was imported" in refused.stderr
    assert last_seq(tmp_path) == before, "the good file was imported although another failed"


def test_importing_the_same_day_twice_is_refused(tmp_path: Path) -> None:
    assert hftctl("import-ticks", str(IF_DAY), "--journal", str(tmp_path)).returncode == 0
    again = hftctl("import-ticks", str(IF_DAY), "--journal", str(tmp_path))
    assert again.returncode == 1 and "time order" in again.stderr
    assert last_seq(tmp_path) == 27955


def test_unknown_instrument_and_missing_journal_are_named(tmp_path: Path) -> None:
    assert hftctl("import-ticks", str(IF_DAY), "--journal", str(tmp_path)).returncode == 0
    unknown = hftctl("ticks", "--journal", str(tmp_path), "--instrument", "rb2105")
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert "no ticks of 'rb2105' (it has: IF2101)" in unknown.stderr
    missing = hftctl("ticks", "--journal", str(tmp_path / "nope"), "--instrument", "IF2101")
    assert missing.returncode == 1 and "no such journal file" in missing.stderr


"""``hftctl pnl`` end to end, through the installed ``hftctl`` entry point: the hand-worked
days as CSV and JSON, the fallback marks, and every refusal with its line and no output."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

HFTCTL = Path(sys.executable).with_name("hftctl")
TRADES_HEADER = ("trading_day,time,account,exchange,instrument,direction,offset,price,volume,"
                 "commission\n")
PRICES_HEADER = "trading_day,instrument,settlement_price\n"
OUTPUT_HEADER = ("trading_day,account,instrument,direction,position,today_position,yd_position,"
                 "open_cost,position_cost,close_profit_by_date,close_profit_by_trade,"
                 "position_profit,position_profit_by_trade,commission,mark_price,mark_source")

# The days of tests/test_book.py, for two accounts. rb (SHFE): multiplier 10, tick 1;
# IF (CFFEX): multiplier 300, tick 0.2.
TRADES = TRADES_HEADER + """\
20210104,09:30:00,a,SHFE,rb2105,buy,open,3500,2,1.50
20210104,09:31:00,a,SHFE,rb2105,buy,open,3520,1,0.75
20210104,09:32:00.500,a,SHFE,rb2105,sell,close_today,3530,1,0.80
20210104,21:05:00,b,CFFEX,IF2101,sell,open,5000.0,2,0
20210104,09:40:00,b,CFFEX,IF2101,sell,open,5010.2,1,0
20210105,09:30:00,a,SHFE,rb2105,sell,close,3540,1,0
20210105,09:31:00,a,SHFE,rb2105,buy,open,3550,1,0
20210105,09:32:00,a,SHFE,rb2105,sell,close_today,3545,1,0
20210105,09:33:00,b,CFFEX,IF2101,sell,open,4980.0,1,0
20210105,09:34:00,b,CFFEX,IF2101,buy,close_today,4990.0,1,0
20210105,09:35:00,b,CFFEX,IF2101,buy,close,4995.0,3,0.123456
"""
PRICES = PRICES_HEADER + """\
20210104,rb2105,3510
20210104,IF2101,5005.0
20210105,rb2105,3560
20210105,IF2101,5001.0
"""
# day 1, a rb long: open 2 @ 3500 + 1 @ 3520, close today 1 @ 3530 (the 3500 lot):
#   close profit (3530 - 3500) x 10 = 300 both ways; held 3500 + 3520: costs 70200;
#   at the 3510 settlement 2 x 35100 - 70200 = 0; commission 1.50 + 0.75 + 0.80 = 3.05
# day 1, b IF short: 2 @ 5000.0 + 1 @ 5010.2: open_cost (10000 + 5010.2) x 300 = 4,503,060;
#   at 5005.0: -(3 x 5005 x 300 - 4,503,060) = -1440
# day 2, a rb: close 1 @ 3540 takes yesterday's 3500 lot: by trade 400, by date
#   (3540 - 3510) x 10 = 300; open 1 @ 3550 and close it today @ 3545: -50 both ways;
#   held the 3520 lot: open_cost 35200, position_cost 35100; at 3560: 500 and 400
# day 2, b IF: open 1 @ 4980 today; close_today 1 @ 4990 takes yesterday's 5000 lot on
#   CFFEX: by trade 3000, by date -(4990 - 5005) x 300 = 4500; close 3 @ 4995: 5000, 5010.2
#   then 4980: by trade 5.2 x 300 = 1560, by date 5 x 300 = 1500; flat
EXPECTED = OUTPUT_HEADER + """
20210104,a,rb2105,long,2,2,0,70200.00,70200.00,300.00,300.00,0.00,0.00,3.05,3510.0,settlement
20210104,b,IF2101,short,3,3,0,4503060.00,4503060.00,0.00,0.00,-1440.00,-1440.00,0.00,5005.0,\
settlement
20210105,a,rb2105,long,1,0,1,35200.00,35100.00,250.00,350.00,500.00,400.00,0.00,3560.0,\
settlement
20210105,b,IF2101,short,0,0,0,0.00,0.00,6000.00,4560.00,0.00,0.00,0.123456,5001.0,settlement
"""


def hftctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HFTCTL), *args], capture_output=True, text=True, timeout=60)


def files(tmp_path: Path, trades: str, prices: str | None = None) -> list[str]:
    (tmp_path / "trades.csv").write_text(trades, encoding="utf-8")
    args = ["pnl", "--trades", str(tmp_path / "trades.csv")]
    if prices is not None:
        (tmp_path / "prices.csv").write_text(prices, encoding="utf-8")
        args += ["--prices", str(tmp_path / "prices.csv")]
    return args


def test_the_hand_worked_days_as_csv(tmp_path: Path) -> None:
    done = hftctl(*files(tmp_path, TRADES, PRICES))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == EXPECTED


def test_json_carries_the_same_exact_figures(tmp_path: Path) -> None:
    done = hftctl(*files(tmp_path, TRADES, PRICES), "--format", "json")
    assert done.returncode == 0, done.stderr
    objects = [json.loads(line, parse_float=Decimal) for line in done.stdout.splitlines()]
    rows = list(csv.DictReader(io.StringIO(EXPECTED)))
    assert [list(o) for o in objects] == [OUTPUT_HEADER.split(",")] * len(rows)
    for obj, row in zip(objects, rows, strict=True):
        assert {k: str(v) for k, v in obj.items()} == row
    assert objects[3]["commission"] == Decimal("0.123456")


def test_without_settlements_the_last_trade_marks_and_the_output_says_so(tmp_path: Path) -> None:
    prices = PRICES_HEADER + "20210104,rb2105,3510\n"
    done = hftctl(*files(tmp_path, TRADES, prices))
    assert done.returncode == 0, done.stderr
    rows = {(r["trading_day"], r["instrument"]): r
            for r in csv.DictReader(io.StringIO(done.stdout))}
    # IF day 1 marked at its last trade 5010.2 (in file order, not by time):
    # -(3 x 5010.2 x 300 - 4,503,060) = -(4,509,180 - 4,503,060) = -6120
    assert (rows["20210104", "IF2101"]["mark_source"], rows["20210104", "IF2101"]["mark_price"],
            rows["20210104", "IF2101"]["position_profit"]) == ("last_trade", "5010.2", "-6120.00")
    assert rows["20210105", "rb2105"]["mark_source"] == "last_trade"
    assert rows["20210104", "rb2105"]["mark_source"] == "settlement"
    assert done.stderr.splitlines() == [
        "note: no settlement price for IF2101 on 20210104: marked at the day's last trade "
        "price 5010.2",
        "note: no settlement price for rb2105 on 20210105: marked at the day's last trade "
        "price 3545.0"]


def test_a_held_position_on_a_day_without_trades_gets_a_row(tmp_path: Path) -> None:
    trades = TRADES_HEADER + "20210104,09:30:00,a,SHFE,rb2105,buy,open,3500,2,0\n"
    prices = PRICES_HEADER + "20210104,rb2105,3510\n20210106,rb2105,3490\n"
    done = hftctl(*files(tmp_path, trades, prices))
    assert done.returncode == 0, done.stderr
    # day 2 (20210106): 2 yesterday's lots at 3510: (3490 - 3510) x 2 x 10 = -400
    assert done.stdout.splitlines()[2] == ("20210106,a,rb2105,long,2,0,2,70000.00,70200.00,"
                                           "0.00,0.00,-400.00,-200.00,0.00,3490.0,settlement")


GOOD = "20210104,09:30:00,a,SHFE,rb2105,buy,open,3500,2,1.50\n"
REFUSED_TRADES = [
    ("20210104,09:31:00,a,SHFE,rb2105,sell,close_today,3501,5,0",
     "account a rb2105 long: closing 5 lots exceeds the 4 unfrozen today's lots held "
     "(CTP 50: 平今仓位不足)"),
    ("20210104,09:31:00,a,SHFE,rb2105,sell,close,3501,1,0",
     "account a rb2105 long: closing 1 lots exceeds the 0 unfrozen yesterday's lots held "
     "(CTP 51: 平昨仓位不足)"),
    ("20210104,09:31:00,a,SHFE,rb2105,buy,close,3501,1,0",
     "account a rb2105 short: closing 1 lots exceeds the 0 unfrozen yesterday's lots held "
     "(CTP 51: 平昨仓位不足)"),
    ("20210104,09:31:00,a,DCE,zz2105,buy,open,3501,1,0",
     "unknown instrument 'zz2105': unknown product 'zz'; the product table has 70 products"),
    ("20210104,09:31:00,a,DCE,rb2105,buy,open,3501,1,0", "exchange 'DCE' is not rb2105's (SHFE)"),
    ("20210104,09:31:00,a,SHFE,rb2105,hold,open,3501,1,0", "direction 'hold' is not one of buy|sell"),
    ("20210104,09:31:00,a,SHFE,rb2105,buy,shut,3501,1,0",
     "offset 'shut' is not one of open|close|close_today|close_yesterday"),
    ("20210104,09:31:00,a,SHFE,rb2105,buy,open,abc,1,0", "price 'abc' is not a number"),
    ("20210104,09:31:00,a,SHFE,rb2105,buy,open,3501.5,1,0",
     "price 3501.5 is not a multiple of rb2105's price tick 1.0"),
    ("20210104,09:31:00,a,SHFE,rb2105,buy,open,-3501,1,0", "price -3501 must be > 0"),
    ("20210104,09:31:00,a,SHFE,rb2105,buy,open,3501,0,0",
     "volume '0' is not a whole number of lots > 0"),
    ("20210104,09:31:00,a,SHFE,rb2105,buy,open,3501,1.5,0",
     "volume '1.5' is not a whole number of lots > 0"),
    ("20210104,09:31:00,a,SHFE,rb2105,buy,open,3501,1,-1", "commission -1 is negative"),
    ("20210104,09:31:00,a,SHFE,rb2105,buy,open,3501,1,0.0000001",
     "commission 0.0000001 has more than 6 decimal places"),
    ("20210104,09:31:00,a,SHFE,rb2105,buy,open,3501,1,NaN", "commission 'NaN' is not a number"),
    ("20210231,09:31:00,a,SHFE,rb2105,buy,open,3501,1,0",
     "trading_day '20210231' is not a date YYYYMMDD"),
    ("20210103,09:31:00,a,SHFE,rb2105,buy,open,3501,1,0",
     "trading_day 20210103 is before the previous row's 20210104: trades must be in "
     "trading-day order"),
    ("20210104,9:31,a,SHFE,rb2105,buy,open,3501,1,0", "time '9:31' is not HH:MM:SS[.ffffff]"),
    ("20210104,09:31:00,,SHFE,rb2105,buy,open,3501,1,0", "account is empty"),
    ("20210104,09:31:00,a,SHFE,rb2105,buy,open,3501,1", "9 fields, the header has 10"),
]


@pytest.mark.parametrize(("row", "reason"), REFUSED_TRADES)
def test_a_refused_trade_names_its_line_and_prints_nothing(tmp_path: Path, row: str,
                                                            reason: str) -> None:
    trades = TRADES_HEADER + GOOD + GOOD + row + "\n" + GOOD
    done = hftctl(*files(tmp_path, trades, PRICES))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"Error: {tmp_path / 'trades.csv'}:4: {reason}"]


REFUSED_PRICES = [
    ("20210104,zz2105,3510", "unknown instrument 'zz2105'"),
    ("20210104,rb2105,3510.5", "settlement_price 3510.5 is not a multiple of rb2105's price tick 1.0"),
    ("20210104,rb2105,", "settlement_price '' is not a number"),
    ("20210104,IF2101,5005.0", "a second settlement_price for IF2101 on 20210104 (the first is "
                               "on line 3)"),
    ("2021-01-04,rb2105,3510", "trading_day '2021-01-04' is not a date YYYYMMDD"),
]


@pytest.mark.parametrize(("row", "reason"), REFUSED_PRICES)
def test_a_refused_price_names_its_line_and_prints_nothing(tmp_path: Path, row: str,
                                                            reason: str) -> None:
    prices = PRICES_HEADER + "20210104,rb2105,3510\n20210104,IF2101,5005.0\n" + row + "\n"
    done = hftctl(*files(tmp_path, TRADES, prices))
    assert (done.returncode, done.stdout) == (1, "")
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"Error: {tmp_path / 'prices.csv'}:4: {reason}")


def test_files_that_are_not_the_format_are_refused(tmp_path: Path) -> None:
    header = hftctl(*files(tmp_path, TRADES.replace("commission", "fee", 1)))
    assert (header.returncode, header.stdout) == (1, "")
    assert header.stderr.startswith(f"Error: {tmp_path / 'trades.csv'}:1: the header must be "
                                    "trading_day,time,account,exchange,instrument,direction,")
    empty = hftctl(*files(tmp_path, ""))
    assert ":1: empty file; the header must be" in empty.stderr
    missing = hftctl("pnl", "--trades", str(tmp_path / "none.csv"))
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == f"Error: {tmp_path / 'none.csv'}: cannot read: No such file or directory\n"
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00garbage")
    binary = hftctl("pnl", "--trades", str(tmp_path / "binary.csv"))
    assert binary.stderr == f"Error: {tmp_path / 'binary.csv'}: not UTF-8 text\n"
    for done in (header, empty, missing, binary):
        assert "Traceback" not in done.stderr and done.returncode == 1


def test_help_explains_the_formats() -> None:
    done = hftctl("pnl", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert TRADES_HEADER.strip() in text and PRICES_HEADER.strip() in text
    assert "direction buy|sell; offset open|close|close_today|close_yesterday" in text

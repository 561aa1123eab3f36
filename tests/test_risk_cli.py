"""``hftctl risk check`` end to end through the real ``hftctl`` entry point: the expected
decision of every row of a written stream, determinism, and refusals of bad input."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import subprocess
import sys
from pathlib import Path

import pytest

HFTCTL = str(Path(sys.executable).with_name("hftctl"))
HEADER = "ts,account,exchange,instrument,action,order_id,direction,offset,price,volume,order_type"

LIMITS = """\
[default]
max_orders_per_s = 3
max_cancels_per_s = 5
max_order_volume = 10
max_order_notional = 20000000.0
duplicate_window_ms = 500
self_trade = "reject"
max_working_orders = 4
max_daily_cancels = 3
daily_cancels_warn = 2

[accounts.sim-a]

[accounts.sim-b]
max_orders_per_s = 10
self_trade = "off"
"""

# (ts, account, exchange, instrument, action, order_id, direction, offset, price, volume,
#  order_type) -> the expected decision's reason ("" = accept)
STREAM: list[tuple[str, str]] = [
    ("2021-01-04T09:30:00.000000,sim-a,CFFEX,IF2101,insert,a1,buy,open,5000.0,1,limit", ""),
    ("2021-01-04T09:30:00.100000,sim-a,CFFEX,IF2101,insert,a2,sell,open,5000.0,1,limit",
     "self_trade"),
    ("2021-01-04T09:30:00.200000,sim-a,CFFEX,IF2101,insert,a3,buy,open,5000.0,1,limit",
     "duplicate"),
    ("2021-01-04T09:30:00.300000,sim-a,CFFEX,IF2101,insert,a4,buy,open,4999.8,1,limit", ""),
    ("2021-01-04T09:30:00.400000,sim-a,CFFEX,IF2101,insert,a5,buy,open,4999.6,1,limit", ""),
    ("2021-01-04T09:30:00.500000,sim-a,CFFEX,IF2101,insert,a6,buy,open,4999.4,1,limit",
     "order_rate"),
    ("2021-01-04T09:30:00.600000,sim-a,CFFEX,IF2101,insert,a7,buy,open,4999.4,11,limit",
     "max_volume"),
    ("2021-01-04T09:30:00.700000,sim-a,CFFEX,IF2101,insert,a8,buy,open,4999.5,1,limit",
     "price_tick"),
    ("2021-01-04T09:30:01.000000,sim-a,CFFEX,IF2101,insert,a9,buy,open,4999.4,1,fak", ""),
    ("2021-01-04T09:30:01.100000,sim-a,,IF2101,cancel,a9,,,,,", "unknown_order"),
    ("2021-01-04T09:30:01.200000,sim-a,,IF2101,cancel,a1,,,,,", ""),
    ("2021-01-04T09:30:01.300000,sim-a,,IF2101,cancel,a1,,,,,", "unknown_order"),
    ("2021-01-04T09:30:01.400000,sim-a,,IF2101,cancel,a2,,,,,", "unknown_order"),
    ("2021-01-04T09:30:01.500000,sim-a,,IF2101,cancel,nope,,,,,", "unknown_order"),
    ("2021-01-04T09:30:01.600000,sim-a,,IF2101,cancel,a4,,,,,", ""),
    ("2021-01-04T09:30:01.700000,sim-a,SHFE,rb2105,insert,r1,buy,open,4000,1,limit", ""),
    ("2021-01-04T09:30:01.800000,sim-a,,rb2105,cancel,r1,,,,,", ""),  # another instrument
    ("2021-01-04T09:30:02.800000,sim-a,CFFEX,IF2101,insert,a10,sell,open,5100.0,1,limit", ""),
    ("2021-01-04T09:30:02.900000,sim-a,CFFEX,IF2101,insert,a11,sell,open,5100.2,1,limit", ""),
    ("2021-01-04T09:30:03.000000,sim-a,CFFEX,IF2101,insert,a12,sell,open,5100.4,1,limit", ""),
    ("2021-01-04T09:30:03.850000,sim-a,CFFEX,IF2101,insert,a13,sell,open,5100.6,1,limit",
     "working_orders"),
    ("2021-01-04T09:30:03.900000,sim-a,,IF2101,cancel,a5,,,,,", ""),
    ("2021-01-04T09:30:03.950000,sim-a,,IF2101,cancel,a10,,,,,", "daily_cancels"),
    ("2021-01-04T09:30:04.000000,sim-a,CFFEX,IF2101,insert,a13,sell,open,5100.6,1,limit", ""),
    # offline no tick gives a price to value a market order at: max_notional cannot pass it
    ("2021-01-04T09:30:04.050000,sim-a,CFFEX,IF2101,insert,a14,buy,open,,1,market",
     "max_notional"),
    ("2021-01-04T09:30:04.100000,sim-b,CFFEX,IF2101,insert,b1,buy,open,5100.6,1,limit", ""),
    ("2021-01-04T09:30:04.150000,sim-b,CFFEX,IF2101,insert,b2,sell,open,5100.6,1,limit", ""),
    ("2021-01-04T09:30:04.200000,sim-b,CFFEX,IF2101,insert,b3,buy,open,5000,0,limit",
     "malformed"),
    ("2021-01-04T09:30:04.250000,sim-c,CFFEX,IF2101,insert,c1,buy,open,5000,1,limit",
     "malformed"),
    ("2021-01-04T09:30:04.300000,sim-b,CZCE,IF2101,insert,b4,buy,open,5000,1,limit",
     "unknown_instrument"),
    ("2021-01-04T09:30:04.350000,sim-b,,XX2101,insert,b5,buy,open,5000,1,limit",
     "unknown_instrument"),
    ("2021-01-04T09:30:04.400000,sim-b,CFFEX,IF2101,insert,b6,buy,open,9000,10,limit",
     "max_notional"),
    # 21:00 on Monday is Tuesday's trading day: sim-a's day's cancels start again
    ("2021-01-04T21:00:00.000000,sim-a,,IF2101,cancel,a10,,,,,", ""),
]


def hftctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HFTCTL, *args], capture_output=True, text=True, timeout=120,
                          check=False)


def write(tmp_path: Path, rows: list[str], limits: str = LIMITS) -> tuple[Path, Path]:
    orders, config = tmp_path / "orders.csv", tmp_path / "risk.toml"
    orders.write_text("\n".join([HEADER, *rows]) + "\n")
    config.write_text(limits)
    return orders, config


def check(orders: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return hftctl("risk", "check", "--orders", str(orders), "--config", str(config),
                  "--format", "csv")


def test_each_row_gets_its_expected_decision(tmp_path: Path) -> None:
    orders, config = write(tmp_path, [row for row, _ in STREAM])
    done = check(orders, config)
    assert done.returncode == 0, done.stderr
    out = list(csv.reader(io.StringIO(done.stdout)))
    assert out[0] == ["row", "order_id", "account", "action", "decision", "reason"]
    expected = []
    for line, (row, reason) in enumerate(STREAM, start=2):
        fields = row.split(",")
        expected.append([str(line), fields[5], fields[1], fields[4],
                         "reject" if reason else "accept", reason])
    assert out[1:] == expected
    # the second cancel of IF2101 reached daily_cancels_warn = 2 (line 16: a4 after a1)
    assert "line 16: warning daily_cancels" in done.stderr


def test_a_days_stream_decided_twice_gives_the_same_decisions(tmp_path: Path) -> None:
    rng = random.Random(11)
    rows: list[str] = []
    live: list[str] = []
    start = dt.datetime(2021, 1, 4, 9, 30)
    for i in range(3000):
        ts = (start + dt.timedelta(milliseconds=100 * i + rng.randrange(100))).isoformat(
            timespec="microseconds")
        account = rng.choice(["sim-a", "sim-b"])
        if live and rng.random() < 0.4:
            rows.append(f"{ts},{account},,IF2101,cancel,{rng.choice(live)},,,,,")
            continue
        price = 5000 + 0.2 * rng.randrange(-20, 20)
        side = rng.choice(["buy", "sell"])
        kind = rng.choice(["limit", "limit", "limit", "fak"])
        rows.append(f"{ts},{account},CFFEX,IF2101,insert,o{i},{side},open,{price:.1f},"
                    f"{rng.randrange(1, 13)},{kind}")
        live.append(f"o{i}")
    orders, config = write(tmp_path, rows)
    first, second = check(orders, config), check(orders, config)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    decisions = [line.split(",") for line in first.stdout.splitlines()[1:]]
    assert len(decisions) == len(rows)
    reasons = {d[5] for d in decisions}
    assert {"", "self_trade", "order_rate", "max_volume", "unknown_order"} <= reasons


@pytest.mark.parametrize(("row", "words"), [
    ("2021-01-04 9:30,sim-a,,IF2101,insert,1,buy,open,5000,1,limit", ["line 2", "ts", "ISO 8601"]),
    ("2021-01-04T09:30:00,sim-a,,IF2101,insert,1,up,open,5000,1,limit",
     ["line 2", "direction 'up'", "buy, sell"]),
    ("2021-01-04T09:30:00,sim-a,,IF2101,insert,1,buy,open,5000,one,limit",
     ["line 2", "volume 'one' is not an integer"]),
    ("2021-01-04T09:30:00,sim-a,,IF2101,insert,1,buy,open,5k,1,limit", ["price '5k'"]),
    ("2021-01-04T09:30:00,sim-a,,IF2101,insert,1,buy,open,5000,1,gtc", ["order_type 'gtc'"]),
    ("2021-01-04T09:30:00,sim-a,,IF2101,modify,1,buy,open,5000,1,limit", ["action 'modify'"]),
    ("2021-01-04T09:30:00,sim-a,,IF2101,insert,1,buy,open,5000,,limit", ["volume is empty"]),
    ("2021-01-04T09:30:00,sim-a,,IF2101,cancel,,,,,,", ["order_id is empty"]),
    ("2021-01-04T09:30:00,sim-a,,IF2101,insert,1,buy,open,5000,1,limit,extra",
     ["1 more field"]),
    ("2021-01-04T09:30:00,an-account-name-too-long,,IF2101,insert,1,buy,open,5000,1,limit",
     ["account", "at most 16"]),
])
def test_malformed_rows_are_refused_with_line_and_reason(tmp_path: Path, row: str,
                                                         words: list[str]) -> None:
    orders, config = write(tmp_path, [row])
    done = check(orders, config)
    assert done.returncode == 1 and done.stdout == ""
    for word in words:
        assert word in done.stderr, (word, done.stderr)


def test_rows_out_of_time_order_are_refused(tmp_path: Path) -> None:
    orders, config = write(tmp_path, [
        "2021-01-04T09:30:01,sim-a,,IF2101,insert,1,buy,open,5000,1,limit",
        "2021-01-04T09:30:00.999999,sim-a,,IF2101,insert,2,buy,open,5000,1,limit"])
    done = check(orders, config)
    assert done.returncode == 1 and done.stdout == ""
    assert "line 3: ts is before the previous row's" in done.stderr


def test_a_bad_header_is_refused(tmp_path: Path) -> None:
    orders, config = write(tmp_path, [])
    orders.write_text("ts,account,instrument,action,order_id,side\n")
    done = check(orders, config)
    assert done.returncode == 1 and done.stdout == ""
    assert "line 1" in done.stderr and "missing exchange" in done.stderr
    assert "unknown side" in done.stderr


@pytest.mark.parametrize(("limits", "words"), [
    ("[default]\nmax_orders_per_s = 0\n", ["default.max_orders_per_s", "greater than or equal to 1"]),
    ("[default]\nmax_orders_per_s = \"10\"\n", ["default.max_orders_per_s", "valid integer"]),
    ("[default]\nmax_order_volumes = 10\n", ["default.max_order_volumes", "unknown key"]),
    ("[accounts.sim-a]\nself_trade = \"maybe\"\n", ["accounts.sim-a.self_trade", "'reject'"]),
    ("[default]\nmax_daily_cancels = 5\ndaily_cancels_warn = 6\n",
     ["daily_cancels_warn", "below max_daily_cancels"]),
    ("[default\n", ["TOML syntax error"]),
])
def test_malformed_limits_are_refused_with_key_and_reason(tmp_path: Path, limits: str,
                                                          words: list[str]) -> None:
    orders, config = write(tmp_path, [STREAM[0][0]], limits)
    done = check(orders, config)
    assert done.returncode == 1 and done.stdout == ""
    for word in words:
        assert word in done.stderr, (word, done.stderr)

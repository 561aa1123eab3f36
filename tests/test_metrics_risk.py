"""The risk daemon's /metrics beyond its counters: the decision latency histograms, the
engine-journal lag, positions and PnL from the live book, and the share of the daily loss
limit used. A real risk daemon (market replay, order desk, simulated exchange) is fed an
order that fills and then a tick that marks it down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.daemons import wait_for
from test_risk_daemon import CONFIG, Rig
from test_strategy_daemon import metrics

from hft.daemons.runtime.config import load_config
from hft.daemons.runtime.events import AlertLevel, EventType
from hft.daemons.runtime.journal import JournalReader

LOSS_LIMIT = 100_000.0
Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


def loss_limited_rig(directory: Path, loss_limit: float) -> Iterator[Rig]:
    config = CONFIG.replace("config.limits.default = { max_order_volume = 5 }",
                            "config.limits.default = { max_order_volume = 5, "
                            f"max_daily_loss = {loss_limit} }}")
    assert config != CONFIG
    rig = Rig(directory, config)
    yield rig
    rig.stop()
    rig.md.close()
    rig.engine.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    yield from loss_limited_rig(tmp_path, LOSS_LIMIT)


@pytest.fixture
def small_limit_rig(tmp_path: Path) -> Iterator[Rig]:
    yield from loss_limited_rig(tmp_path, 1000.0)


def mark_down(rig: Rig, points: float) -> None:
    """A tick ``points`` below the first one's last price, a second later."""
    marked_down = rig.ticks[0].copy()
    marked_down["last_price"] -= points
    marked_down["ts_ns"] += 1_000_000_000
    rig.md.append(marked_down)


def test_the_desk_exports_latencies_lag_positions_pnl_and_loss_limit_use(rig: Rig) -> None:
    rig.start()
    assert rig.risk is not None
    risk = rig.risk
    rig.order(1, ticks_below_bid=-50)  # a buy above the ask: it fills
    side = frozenset({("account", "sim-a"), ("instrument", "IF2101"), ("direction", "long")})

    def holding() -> Scrape:
        scraped = metrics(risk)
        return scraped if scraped.get(("hft_risk_position_lots", side)) == 1 else {}

    scraped = wait_for(holding, "the fill to show in hft_risk_position_lots")
    for name in ("hft_risk_decision_latency_seconds", "hft_risk_request_to_send_seconds"):
        assert scraped[(f"{name}_count", frozenset())] == 1
        assert scraped[(f"{name}_bucket", frozenset({("le", "+Inf")}))] == 1
        assert (f"{name}_bucket", frozenset({("le", "1e-06")})) in scraped
    assert scraped[("hft_risk_request_lag_records", frozenset({("journal", "engine")}))] == 0

    mark_down(rig, 20.0)  # 20 index points, 300 CNY each, below the fill
    account = frozenset({("account", "sim-a")})

    def losing() -> Scrape:
        scraped = metrics(risk)
        return scraped if scraped[("hft_risk_pnl", account)] < -5_000 else {}

    scraped = wait_for(losing, "the mark to show as a loss in hft_risk_pnl")
    pnl = scraped[("hft_risk_pnl", account)]
    assert scraped[("hft_risk_position_pnl", side)] == pytest.approx(pnl)
    assert scraped[("hft_risk_loss_limit_used_ratio", account)] == pytest.approx(-pnl / LOSS_LIMIT)


def test_the_loss_limit_reached_is_one_critical_alert_in_the_risk_journal(
        small_limit_rig: Rig) -> None:
    """What the watchdog sends on: the first order the loss limit refuses raises one critical
    ALERT (loss_limit) in the risk journal; later refusals that day raise none."""
    rig = small_limit_rig
    rig.start()
    filled = rig.order(1, ticks_below_bid=-50)
    wait_for(lambda: rig.orders().get(filled, {}).get("status") == "all_traded", "the fill")
    mark_down(rig, 20.0)  # -6000 CNY, past max_daily_loss 1000
    refused = [rig.order(1), rig.order(1)]

    def all_refused() -> bool:
        rows = rig.orders()
        return all(rows.get(ref, {}).get("status") == "risk_rejected" for ref in refused)

    wait_for(all_refused, "both opening orders refused by the loss limit")
    assert all(rig.orders()[ref]["message"].startswith("loss_limit") for ref in refused)
    with JournalReader(load_config(rig.config).journal_dir, "risk") as reader:
        alerts = [(int(record["level"]), bytes(record["message"]))
                  for event_type, record in reader.committed()
                  if event_type == EventType.ALERT and record["code"] == b"loss_limit"]
    assert len(alerts) == 1
    level, message = alerts[0]
    assert level == AlertLevel.CRITICAL
    assert b"max_daily_loss 1000" in message

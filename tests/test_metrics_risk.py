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

LOSS_LIMIT = 100_000.0
Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    config = CONFIG.replace("config.limits.default = { max_order_volume = 5 }",
                            "config.limits.default = { max_order_volume = 5, "
                            f"max_daily_loss = {LOSS_LIMIT} }}")
    assert config != CONFIG
    rig = Rig(tmp_path, config)
    yield rig
    rig.stop()
    rig.md.close()
    rig.engine.close()


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

    marked_down = rig.ticks[0].copy()
    marked_down["last_price"] -= 20.0  # 20 index points, 300 CNY each, below the fill
    marked_down["ts_ns"] += 1_000_000_000
    rig.md.append(marked_down)
    account = frozenset({("account", "sim-a")})

    def losing() -> Scrape:
        scraped = metrics(risk)
        return scraped if scraped[("hft_risk_pnl", account)] < -5_000 else {}

    scraped = wait_for(losing, "the mark to show as a loss in hft_risk_pnl")
    pnl = scraped[("hft_risk_pnl", account)]
    assert scraped[("hft_risk_position_pnl", side)] == pytest.approx(pnl)
    assert scraped[("hft_risk_loss_limit_used_ratio", account)] == pytest.approx(-pnl / LOSS_LIMIT)

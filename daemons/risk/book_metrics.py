"""The risk daemon's positions, PnL and loss-limit headroom as Prometheus gauges.

Read from the live position book (``daemons/trade/livebook.py``) when Prometheus scrapes,
on the /metrics thread: nothing is kept or computed for them on the order path. Money is CNY,
the trading day's figures as the book has them (realized by date plus floating at the last
mark), the same PnL the ``loss_limit`` check reads.
"""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from hft.daemons.risk.limits import RiskLimits
from hft.daemons.runtime.events import PosDirection
from hft.daemons.trade.book import MONEY_SCALE
from hft.daemons.trade.livebook import LiveBook

_SIDE = {PosDirection.LONG: "long", PosDirection.SHORT: "short"}


def book_families(positions: LiveBook, limits: RiskLimits) -> list[Metric]:
    """Lots and PnL per (account, instrument, direction), PnL per account, and the share of
    ``max_daily_loss`` each account with one has lost."""
    labels = ["account", "instrument", "direction"]
    lots = GaugeMetricFamily("hft_risk_position_lots", "Lots held (yesterday's and today's)",
                             labels=labels)
    side_pnl = GaugeMetricFamily("hft_risk_position_pnl", "The trading day's PnL of one side "
                                 "(closed by date plus floating at the last mark), CNY",
                                 labels=labels)
    accounts: dict[str, float] = {}
    for entry in list(positions.book.entries()):
        key = [entry.account, entry.contract.instrument, _SIDE[PosDirection(entry.direction)]]
        money = (entry.close_profit_by_date + entry.position_profit) / MONEY_SCALE
        lots.add_metric(key, entry.position)
        side_pnl.add_metric(key, money)
        accounts[entry.account] = accounts.get(entry.account, 0.0) + money
    pnl = GaugeMetricFamily("hft_risk_pnl", "Each account's PnL of the trading day, CNY (what "
                            "the loss_limit check compares with max_daily_loss)",
                            labels=["account"])
    used = GaugeMetricFamily("hft_risk_loss_limit_used_ratio", "The day's loss over "
                             "max_daily_loss (0 while in profit, 1 when the limit is reached), "
                             "for accounts with a limit", labels=["account"])
    for account in sorted(accounts.keys() | limits.accounts.keys()):
        money = accounts.get(account, 0.0)
        pnl.add_metric([account], money)
        limit = limits.limits_of(account).max_daily_loss
        if limit is not None:
            used.add_metric([account], max(0.0, -money) / limit)
    return [lots, side_pnl, pnl, used]

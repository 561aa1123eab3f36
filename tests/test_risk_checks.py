"""The pre-trade check chain (daemons/risk): each check at its boundary values, precedence,
refused requests not counting, order-state tracking from returns, kill switch, runtime limits."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest

from hft.daemons.refdata.instruments import ProductTable
from hft.daemons.risk.chain import Rejection, RiskChain
from hft.daemons.risk.checks import PRECEDENCE
from hft.daemons.risk.limits import LimitError, validate
from hft.daemons.runtime.events import EventType, OrderStatus, PriceType, empty

PRODUCTS = ProductTable.load()
CHINA = dt.timezone(dt.timedelta(hours=8))
S = 1_000_000_000
MS = 1_000_000


def at(text: str) -> int:
    """ns of a China local time, e.g. "2021-01-04 09:30"."""
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=CHINA).timestamp()) * S


T0 = at("2021-01-04 09:30")
BUY, SELL = 0, 1
OPEN, CLOSE = 0, 1
LIMIT, MARKET, FAK, FOK = (int(t) for t in PriceType)


def order(ref: int, price: float = 5000.0, volume: int = 1, direction: int = BUY, *,
          offset: int = OPEN, price_type: int = LIMIT, account: str = "sim-a",
          instrument: str = "IF2101", exchange: str = "") -> Any:
    record = empty(EventType.ORDER_REQ)[0]
    record["order_ref"], record["price"], record["volume"] = ref, price, volume
    record["direction"], record["offset"], record["price_type"] = direction, offset, price_type
    record["account"], record["instrument"], record["exchange"] = (
        account.encode(), instrument.encode(), exchange.encode())
    return record


def cancel(ref: int, *, account: str = "sim-a", instrument: str = "IF2101") -> Any:
    record = empty(EventType.CANCEL_REQ)[0]
    record["order_ref"], record["account"], record["instrument"] = (
        ref, account.encode(), instrument.encode())
    return record


def rtn(ref: int, status: OrderStatus, traded: int = 0, *, account: str = "sim-a") -> Any:
    record = empty(EventType.RTN_ORDER)[0]
    record["order_ref"], record["status"], record["volume_traded"] = ref, status, traded
    record["account"], record["order_sys_id"] = account.encode(), b"  42"
    return record


def trade(ref: int, volume: int, *, account: str = "sim-a") -> Any:
    record = empty(EventType.RTN_TRADE)[0]
    record["order_ref"], record["volume"], record["account"] = ref, volume, account.encode()
    return record


def tick(last: float, upper: float, lower: float, instrument: str = "IF2101") -> Any:
    record = empty(EventType.MARKET_DATA)[0]
    record["instrument"], record["last_price"] = instrument.encode(), last
    record["upper_limit_price"], record["lower_limit_price"] = upper, lower
    return record


class Book:
    """A position view with fixed lots and PnL."""

    def __init__(self, long: int = 0, short: int = 0, pnl: float = 0.0) -> None:
        self.held = (long, short)
        self.day_pnl = pnl

    def lots(self, account: str, instrument: str) -> tuple[int, int]:
        return self.held

    def pnl(self, account: str) -> float:
        return self.day_pnl


def make(alerts: list[tuple[str, str]] | None = None, accounts: dict[str, Any] | None = None,
         **default: Any) -> RiskChain:
    limits = validate({"default": default, "accounts": accounts or {}}, "test")
    sink = alerts if alerts is not None else []
    return RiskChain(limits, PRODUCTS, alert=lambda code, text: sink.append((code, text)))


def code(result: Rejection | None) -> str | None:
    return None if result is None else result.code


def test_precedence_is_issue_11s_order() -> None:
    assert PRECEDENCE == (
        "malformed", "unknown_instrument", "kill_switch", "unknown_order", "max_volume",
        "max_notional", "price_tick", "price_band", "order_rate", "cancel_rate", "duplicate",
        "self_trade", "position_limit", "working_orders", "cancel_ratio", "daily_cancels",
        "loss_limit")


# --- structural checks ----------------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    order(1, volume=0), order(1, volume=-3), order(1, direction=2), order(1, offset=4),
    order(1, price_type=7), order(0), order(1, price=float("nan")), order(1, price=-5.0),
    order(1, price=float("inf")), order(1, account=""), order(1, price=float("nan"),
                                                                 price_type=FAK)])
def test_malformed_orders(bad: np.void) -> None:
    assert code(make().decide_insert(bad, T0)) == "malformed"


def test_market_order_needs_no_price() -> None:
    assert make().decide_insert(order(1, float("nan"), price_type=MARKET), T0) is None


def test_unknown_instrument_and_wrong_exchange() -> None:
    chain = make()
    assert code(chain.decide_insert(order(1, instrument="XX2101"), T0)) == "unknown_instrument"
    assert code(chain.decide_insert(order(2, instrument="2101"), T0)) == "unknown_instrument"
    assert code(chain.decide_insert(order(3, exchange="SHFE"), T0)) == "unknown_instrument"
    assert chain.decide_insert(order(4, exchange="CFFEX"), T0) is None
    assert code(chain.decide_cancel(cancel(9, instrument="XX2101"), T0)) == "unknown_instrument"


def test_a_live_order_ref_cannot_be_reused() -> None:
    chain = make()
    assert chain.decide_insert(order(1), T0) is None
    assert code(chain.decide_insert(order(1, 4000.0), T0)) == "malformed"
    chain.on_order(rtn(1, OrderStatus.CANCELLED))
    assert chain.decide_insert(order(1, 4000.0), T0) is None


def test_unlisted_account_is_malformed_only_when_accounts_are_listed() -> None:
    listed = make(accounts={"sim-a": {}})
    result = listed.decide_insert(order(1, account="sim-x"), T0)
    assert code(result) == "malformed" and "sim-x" in result.text  # type: ignore[union-attr]
    assert listed.decide_insert(order(1), T0) is None
    assert make().decide_insert(order(1, account="anyone"), T0) is None


# --- order and cancel rates -----------------------------------------------------------------

def test_order_rate_window_is_the_last_second_exactly() -> None:
    chain = make(max_orders_per_s=3)
    for i in range(3):
        assert chain.decide_insert(order(i + 1, 5000.0 + i), T0 + i) is None
    result = chain.decide_insert(order(10, 4000.0), T0 + S - 1)  # T0 is still in (t - 1 s, t]
    assert code(result) == "order_rate" and "max_orders_per_s 3" in result.text  # type: ignore[union-attr]
    assert chain.decide_insert(order(11, 4000.0), T0 + S) is None  # T0 just left the window
    assert code(chain.decide_insert(order(12, 4000.2), T0 + S)) == "order_rate"


def test_refused_orders_do_not_count_toward_the_rate() -> None:
    chain = make(max_orders_per_s=1)
    assert chain.decide_insert(order(1), T0) is None
    assert code(chain.decide_insert(order(2, 4000.0), T0 + S // 2)) == "order_rate"
    assert code(chain.decide_insert(order(3, 5000.1), T0 + S)) == "price_tick"
    assert chain.decide_insert(order(4, 4000.0), T0 + S) is None  # neither refusal counted


def test_order_rate_is_per_account() -> None:
    chain = make(max_orders_per_s=1)
    assert chain.decide_insert(order(1), T0) is None
    assert chain.decide_insert(order(1, account="sim-b"), T0) is None
    assert code(chain.decide_insert(order(2), T0)) == "order_rate"


def resting(chain: RiskChain, count: int, account: str = "sim-a", first_ref: int = 1) -> None:
    for i in range(count):
        assert chain.decide_insert(order(first_ref + i, 4000.0 + i, account=account), T0) is None


def test_cancel_rate_window_and_refusals_not_counting() -> None:
    chain = make(max_cancels_per_s=2)
    resting(chain, 4)
    assert chain.decide_cancel(cancel(1), T0 + 10) is None
    assert chain.decide_cancel(cancel(2), T0 + 20) is None
    result = chain.decide_cancel(cancel(3), T0 + 10 + S - 1)
    assert code(result) == "cancel_rate" and "max_cancels_per_s 2" in result.text  # type: ignore[union-attr]
    assert code(chain.decide_cancel(cancel(99), T0 + 10 + S)) == "unknown_order"
    assert chain.decide_cancel(cancel(3), T0 + 10 + S) is None
    assert code(chain.decide_cancel(cancel(4), T0 + 20 + S - 1)) == "cancel_rate"


# --- order size and price -------------------------------------------------------------------

def test_max_volume_boundary() -> None:
    chain = make(max_order_volume=5)
    assert chain.decide_insert(order(1, volume=5), T0) is None
    assert code(chain.decide_insert(order(2, volume=6), T0)) == "max_volume"


def test_max_notional_boundary_uses_the_multiplier() -> None:
    chain = make(max_order_notional=1_500_000)  # IF: 300 per point
    assert chain.decide_insert(order(1, 5000.0), T0) is None
    assert code(chain.decide_insert(order(2, 5000.2), T0)) == "max_notional"
    assert code(chain.decide_insert(order(3, 2500.2, 2), T0)) == "max_notional"


def test_max_notional_of_a_market_order_uses_the_limit_price() -> None:
    chain = make(max_order_notional=1_500_000)
    unpriced = chain.decide_insert(order(9, float("nan"), price_type=MARKET), T0)
    assert code(unpriced) == "max_notional" and "no price" in unpriced.text  # type: ignore[union-attr]
    chain.on_tick(tick(4900.0, 5000.2, 4500.0))
    assert code(chain.decide_insert(order(1, float("nan"), price_type=MARKET), T0)) == "max_notional"
    assert chain.decide_insert(order(2, float("nan"), direction=SELL, price_type=MARKET), T0) is None


def test_price_tick() -> None:
    chain = make()
    assert chain.decide_insert(order(1, 5000.2), T0) is None
    result = chain.decide_insert(order(2, 5000.1), T0)
    assert code(result) == "price_tick" and "0.2" in result.text  # type: ignore[union-attr]
    assert chain.decide_insert(order(3, 3000.0, instrument="rb2105"), T0) is None
    assert code(chain.decide_insert(order(4, 3000.5, instrument="rb2105"), T0)) == "price_tick"


def test_price_band_limit_prices_and_ticks_from_last() -> None:
    chain = make(max_ticks_from_last=10)
    assert chain.decide_insert(order(1, 9000.0), T0) is None  # nothing known yet: passes
    chain.on_tick(tick(5000.0, 5500.0, 4500.0))
    assert chain.decide_insert(order(2, 5002.0), T0) is None  # exactly 10 ticks
    assert chain.decide_insert(order(3, 4998.0, direction=SELL), T0) is None
    assert code(chain.decide_insert(order(4, 5002.2), T0)) == "price_band"
    assert code(chain.decide_insert(order(5, 4997.8), T0)) == "price_band"
    unbounded = make()
    unbounded.on_tick(tick(5000.0, 5500.0, 4500.0))
    assert unbounded.decide_insert(order(1, 5500.0), T0) is None
    assert unbounded.decide_insert(order(2, 4500.0), T0) is None
    assert code(unbounded.decide_insert(order(3, 5500.2), T0)) == "price_band"
    assert code(unbounded.decide_insert(order(4, 4499.8), T0)) == "price_band"


# --- duplicate and self-trade ---------------------------------------------------------------

def test_duplicate_window_edge() -> None:
    chain = make(duplicate_window_ms=100)
    assert chain.decide_insert(order(1), T0) is None
    assert code(chain.decide_insert(order(2), T0 + 100 * MS - 1)) == "duplicate"
    assert chain.decide_insert(order(3, volume=2), T0 + 1) is None  # another volume
    assert chain.decide_insert(order(4, 5000.2), T0 + 1) is None  # another price
    assert chain.decide_insert(order(5, direction=SELL, price=5100.0), T0 + 1) is None
    assert chain.decide_insert(order(6), T0 + 100 * MS) is None  # order 1 left the window
    assert code(chain.decide_insert(order(7), T0 + 100 * MS + 1)) == "duplicate"  # order 6


def test_self_trade_reject() -> None:
    chain = make(self_trade="reject")
    assert chain.decide_insert(order(1, 5000.0, direction=SELL), T0) is None
    assert chain.decide_insert(order(2, 4999.8), T0) is None  # below the resting sell
    assert code(chain.decide_insert(order(3, 5000.0), T0)) == "self_trade"
    assert code(chain.decide_insert(order(4, 5000.4, price_type=FAK), T0)) == "self_trade"
    assert code(chain.decide_insert(order(5, float("nan"), price_type=MARKET), T0)) == "self_trade"
    assert code(chain.decide_insert(order(6, 4999.8, direction=SELL), T0)) == "self_trade"  # vs 2
    assert chain.decide_insert(order(7, 5000.0, account="sim-b"), T0) is None  # other account
    assert chain.decide_insert(order(8, 3000.0, instrument="rb2105"), T0) is None
    chain.on_order(rtn(1, OrderStatus.CANCELLED))
    assert chain.decide_insert(order(9, 5000.0), T0) is None


def test_self_trade_follows_the_best_resting_price_as_orders_go() -> None:
    chain = make(self_trade="reject")
    for ref, price in [(1, 5000.0), (2, 5002.0), (3, 5001.0)]:
        assert chain.decide_insert(order(ref, price, direction=SELL), T0) is None
    assert code(chain.decide_insert(order(10, 5000.0), T0)) == "self_trade"
    chain.on_order(rtn(1, OrderStatus.CANCELLED))  # the best sell leaves: 5001 is the best now
    assert chain.decide_insert(order(11, 5000.8), T0) is None
    assert code(chain.decide_insert(order(12, 5001.0), T0)) == "self_trade"
    chain.on_trade(trade(3, 1))  # filled: 5002 is left
    assert chain.decide_insert(order(13, 5001.8), T0) is None
    chain.on_order(rtn(2, OrderStatus.CANCELLED))  # no resting sell: any buy passes
    assert chain.decide_insert(order(14, float("nan"), price_type=MARKET), T0) is None
    assert code(chain.decide_insert(order(15, 5000.8, direction=SELL), T0)) == "self_trade"


def test_self_trade_cancel_resting_cancels_first_and_counts_it() -> None:
    chain = make(self_trade="cancel_resting", max_daily_cancels=1)
    assert chain.decide_insert(order(1, 5000.0, direction=SELL), T0) is None
    assert chain.decide_insert(order(2, 5000.0), T0) is None
    assert [o.order_ref for o in chain.cancel_first] == [1]
    assert chain.cancel_first[0].cancel_requested
    assert code(chain.decide_cancel(cancel(1), T0)) == "unknown_order"  # already being cancelled
    chain.on_order(rtn(1, OrderStatus.CANCELLED))
    # the resting cancel used the day's one cancel: the next crossing order cannot cancel first
    result = chain.decide_insert(order(3, 5000.0, direction=SELL), T0)
    assert code(result) == "self_trade" and "daily_cancels" in result.text  # type: ignore[union-attr]
    assert chain.cancel_first == []
    assert chain.decide_insert(order(4, 5000.2, direction=SELL), T0) is None  # above the buy


# --- position and working orders ------------------------------------------------------------

def test_position_limit_net_counts_working_orders() -> None:
    chain = make(max_net_position=5)
    chain.set_position_view(Book(long=2))
    assert chain.decide_insert(order(1, volume=3), T0) is None  # 2 + 3 = 5
    assert code(chain.decide_insert(order(2, 4000.0), T0)) == "position_limit"  # 6 with order 1
    assert chain.decide_insert(order(3, 6000.0, 7, SELL, offset=CLOSE), T0) is None  # 2 - 7 = -5
    assert code(chain.decide_insert(order(4, 6000.2, 1, SELL), T0)) == "position_limit"
    chain.on_order(rtn(1, OrderStatus.CANCELLED))
    assert chain.decide_insert(order(5, 4000.0, 3), T0) is None


def test_position_limit_lets_a_reducing_order_through_when_already_over() -> None:
    chain = make(max_net_position=5)
    chain.set_position_view(Book(long=8))
    assert chain.decide_insert(order(1, 5000.0, 2, SELL, offset=CLOSE), T0) is None
    assert code(chain.decide_insert(order(2, 4000.0), T0)) == "position_limit"


def test_position_limit_gross_counts_only_opening_orders() -> None:
    chain = make(max_gross_position=4)
    chain.set_position_view(Book(long=1, short=1))
    assert chain.decide_insert(order(1, volume=2), T0) is None  # 2 held + 2 = 4
    assert code(chain.decide_insert(order(2, 4000.0), T0)) == "position_limit"
    assert chain.decide_insert(order(3, 6000.0, 1, SELL, offset=CLOSE), T0) is None
    chain.on_trade(trade(1, 2))  # filled: the lots are now in the book's view, not working
    chain.set_position_view(Book(long=3, short=1))
    assert code(chain.decide_insert(order(4, 4000.0), T0)) == "position_limit"
    chain.set_position_view(Book(long=2, short=1))
    assert chain.decide_insert(order(5, 4000.0), T0) is None


def test_working_orders_counts_only_resting_orders() -> None:
    chain = make(max_working_orders=2)
    resting(chain, 2)
    result = chain.decide_insert(order(3, 3000.0), T0)
    assert code(result) == "working_orders" and "max_working_orders 2" in result.text  # type: ignore[union-attr]
    assert chain.decide_insert(order(4, 3000.0, price_type=FAK), T0) is None
    chain.on_order(rtn(4, OrderStatus.CANCELLED))
    assert chain.decide_cancel(cancel(1), T0) is None
    assert code(chain.decide_insert(order(5, 3000.0), T0)) == "working_orders"  # 1 still pending
    chain.on_order(rtn(1, OrderStatus.CANCELLED))
    assert chain.decide_insert(order(5, 3000.0), T0) is None
    chain.on_order(rtn(2, OrderStatus.PART_TRADED, 1))  # still working
    assert code(chain.decide_insert(order(6, 3000.2), T0)) == "working_orders"
    chain.on_order(rtn(2, OrderStatus.ALL_TRADED, 1))
    assert chain.decide_insert(order(6, 3000.2), T0) is None


# --- cancels per day ------------------------------------------------------------------------

def test_cancel_ratio_warns_then_refuses() -> None:
    alerts: list[tuple[str, str]] = []
    chain = make(alerts, cancel_ratio_min_orders=4, cancel_ratio_warn=0.25, cancel_ratio_limit=0.5)
    resting(chain, 4)
    assert chain.decide_cancel(cancel(1), T0) is None  # 1/4 = warn: not above it
    assert alerts == []
    assert chain.decide_cancel(cancel(2), T0) is None  # 2/4 = limit: not above it
    assert [a[0] for a in alerts] == ["cancel_ratio"] and "0.500" in alerts[0][1]
    result = chain.decide_cancel(cancel(3), T0)
    assert code(result) == "cancel_ratio" and "cancel_ratio_limit 0.5" in result.text  # type: ignore[union-attr]
    resting(chain, 2, first_ref=5)  # 3/6 = the limit: room for one more
    assert chain.decide_cancel(cancel(3), T0) is None
    assert len(alerts) == 1  # one warning a day


def test_cancel_ratio_is_not_checked_before_min_orders() -> None:
    chain = make(cancel_ratio_min_orders=4, cancel_ratio_limit=0.5)
    resting(chain, 3)
    for ref in (1, 2, 3):
        assert chain.decide_cancel(cancel(ref), T0) is None
    resting(chain, 1, first_ref=4)  # 4 orders, 3 cancels: 4/4 would be above 0.5
    assert code(chain.decide_cancel(cancel(4), T0)) == "cancel_ratio"


def test_daily_cancels_warn_and_limit_per_instrument() -> None:
    alerts: list[tuple[str, str]] = []
    chain = make(alerts, max_daily_cancels=3, daily_cancels_warn=2)
    resting(chain, 5)
    assert chain.decide_insert(order(9, 3000.0, instrument="rb2105"), T0) is None
    assert chain.decide_cancel(cancel(1), T0) is None
    assert alerts == []
    assert chain.decide_cancel(cancel(2), T0) is None
    assert [a[0] for a in alerts] == ["daily_cancels"]
    assert chain.decide_cancel(cancel(3), T0) is None
    result = chain.decide_cancel(cancel(4), T0)
    assert code(result) == "daily_cancels" and "max_daily_cancels 3" in result.text  # type: ignore[union-attr]
    assert chain.decide_cancel(cancel(9, instrument="rb2105"), T0) is None  # another instrument
    assert len(alerts) == 1


def test_daily_cancels_follow_ctps_trading_day() -> None:
    chain = make(max_daily_cancels=1)
    friday_day, friday_night = at("2021-01-08 10:00"), at("2021-01-08 21:00")
    saturday_early, monday = at("2021-01-09 01:00"), at("2021-01-11 10:00")
    for ref in range(1, 6):
        assert chain.decide_insert(order(ref, 4000.0 + ref, instrument="rb2105"), friday_day) is None
    assert chain.decide_cancel(cancel(1, instrument="rb2105"), friday_day) is None
    assert code(chain.decide_cancel(cancel(2, instrument="rb2105"), friday_day + S)) == "daily_cancels"
    # Friday 21:00 is Monday's night session: a new trading day
    assert chain.decide_cancel(cancel(2, instrument="rb2105"), friday_night) is None
    assert code(chain.decide_cancel(cancel(3, instrument="rb2105"), saturday_early)) == "daily_cancels"
    assert code(chain.decide_cancel(cancel(3, instrument="rb2105"), monday)) == "daily_cancels"
    assert chain.decide_cancel(cancel(3, instrument="rb2105"), at("2021-01-12 09:00")) is None


def test_refused_cancels_do_not_count_toward_the_day() -> None:
    chain = make(max_daily_cancels=1)
    resting(chain, 2)
    assert code(chain.decide_cancel(cancel(77), T0)) == "unknown_order"
    assert chain.decide_cancel(cancel(1), T0) is None


# --- unknown orders -------------------------------------------------------------------------

def test_unknown_order_for_each_non_working_kind() -> None:
    chain = make(max_order_volume=5)
    assert chain.decide_insert(order(1), T0) is None
    assert chain.decide_insert(order(2, 4000.0), T0) is None
    assert chain.decide_insert(order(3, 4000.2), T0) is None
    assert chain.decide_insert(order(4, 5000.4, price_type=FAK), T0) is None
    assert chain.decide_insert(order(5, 5000.6, price_type=FOK), T0) is None
    assert chain.decide_insert(order(6, float("nan"), price_type=MARKET), T0) is None
    assert code(chain.decide_insert(order(7, volume=9), T0)) == "max_volume"
    chain.on_order(rtn(1, OrderStatus.CANCELLED))
    chain.on_trade(trade(2, 1))
    chain.on_order(rtn(3, OrderStatus.REJECTED))
    assert chain.decide_cancel(cancel(8), T0) is not None
    texts = {}
    for ref, kind in [(8, "unknown"), (7, "refused by risk"), (1, "cancelled"), (2, "filled"),
                      (3, "rejected"), (4, "FAK"), (5, "FAK"), (6, "FAK")]:
        result = chain.decide_cancel(cancel(ref), T0)
        assert code(result) == "unknown_order", ref
        texts[ref] = result.text  # type: ignore[union-attr]
        assert kind in texts[ref], (ref, texts[ref])
    chain.on_order(rtn(4, OrderStatus.CANCELLED))
    assert "cancelled" in chain.decide_cancel(cancel(4), T0).text  # type: ignore[union-attr]


# --- loss limit -----------------------------------------------------------------------------

def test_loss_limit_lets_only_reducing_orders_pass() -> None:
    chain = make(max_daily_loss=1000)
    chain.set_position_view(Book(long=2, pnl=-1000.0))
    assert chain.decide_insert(order(1), T0) is None  # at the limit, not past it
    chain.set_position_view(Book(long=2, pnl=-1000.5))
    result = chain.decide_insert(order(2, 4000.0), T0)
    assert code(result) == "loss_limit" and "max_daily_loss 1000" in result.text  # type: ignore[union-attr]
    assert chain.decide_insert(order(3, 5000.0, 2, SELL, offset=CLOSE), T0) is None
    assert code(chain.decide_insert(order(4, 5000.2, 3, SELL, offset=CLOSE), T0)) == "loss_limit"
    assert code(chain.decide_insert(order(5, 5000.4, 1, SELL), T0)) == "loss_limit"  # opens short
    assert code(chain.decide_insert(order(6, 4000.0, 1, BUY, offset=CLOSE), T0)) == "loss_limit"


def test_the_loss_limit_reached_raises_one_alert_a_day() -> None:
    alerts: list[tuple[str, str]] = []
    chain = make(alerts, max_daily_loss=1000)
    chain.set_position_view(Book(long=2, pnl=-1500.0))
    for ref in (1, 2, 3):
        assert code(chain.decide_insert(order(ref, 4000.0), T0)) == "loss_limit"
    assert len(alerts) == 1
    assert alerts[0][0] == "loss_limit" and "max_daily_loss 1000" in alerts[0][1]
    next_day = T0 + 24 * 3600 * 10**9
    assert code(chain.decide_insert(order(4, 4000.0), next_day)) == "loss_limit"
    assert [alert_code for alert_code, _ in alerts] == ["loss_limit", "loss_limit"]


# --- precedence -----------------------------------------------------------------------------

def test_precedence_when_several_insert_checks_fail() -> None:
    """One order failing every insert check; relaxing each in turn reveals the next reason,
    in PRECEDENCE order."""
    chain = make(duplicate_window_ms=1000)  # remembers accepted orders only while it is on
    chain.on_tick(tick(5000.0, 5500.0, 4500.0))
    assert chain.decide_insert(order(1, 5400.0, 1, BUY), T0) is None  # the probe's duplicate
    assert chain.decide_insert(order(2, 5400.0, 1, SELL), T0) is None  # the probe crosses it
    chain.set_position_view(Book(pnl=-100.0))
    for key, value in [("max_order_volume", 1), ("max_order_notional", 1000.0),
                       ("max_orders_per_s", 1),
                       ("self_trade", "reject"), ("max_net_position", 1),
                       ("max_working_orders", 2), ("max_daily_loss", 10.0)]:
        chain.set("default", key, value)
    probe = {"price": 5500.1, "volume": 2}
    relax: list[tuple[str, Any]] = [
        ("max_volume", lambda: chain.set("default", "max_order_volume", None)),
        ("max_notional", lambda: chain.set("default", "max_order_notional", None)),
        ("price_tick", lambda: probe.update(price=5600.0)),
        ("price_band", lambda: probe.update(price=5400.0, volume=1)),
        ("order_rate", lambda: chain.set("default", "max_orders_per_s", None)),
        ("duplicate", lambda: chain.set("default", "duplicate_window_ms", None)),
        ("self_trade", lambda: chain.set("default", "self_trade", "off")),
        ("position_limit", lambda: chain.set("default", "max_net_position", None)),
        ("working_orders", lambda: chain.set("default", "max_working_orders", None)),
        ("loss_limit", lambda: chain.set("default", "max_daily_loss", None)),
    ]
    seen = []
    for expected, action in relax:
        result = chain.decide_insert(order(10, probe["price"], int(probe["volume"])), T0 + 1)
        seen.append(code(result))
        assert code(result) == expected, (seen, result)
        action()
    assert chain.decide_insert(order(10, probe["price"], int(probe["volume"])), T0 + 1) is None
    assert seen == [c for c in PRECEDENCE if c in seen]


def test_precedence_when_several_cancel_checks_fail() -> None:
    chain = make(max_cancels_per_s=1, cancel_ratio_limit=0.1, max_daily_cancels=1)
    resting(chain, 3)
    chain.set("default", "cancel_ratio_limit", None)
    assert chain.decide_cancel(cancel(1), T0) is None
    chain.set("default", "cancel_ratio_limit", 0.1)
    assert code(chain.decide_cancel(cancel(2), T0)) == "cancel_rate"
    chain.set("default", "max_cancels_per_s", None)
    assert code(chain.decide_cancel(cancel(2), T0)) == "cancel_ratio"
    chain.set("default", "cancel_ratio_limit", None)
    assert code(chain.decide_cancel(cancel(2), T0)) == "daily_cancels"
    chain.kill(cancel_all=False)
    assert code(chain.decide_cancel(cancel(99), T0)) == "kill_switch"  # before unknown_order
    assert code(chain.decide_insert(order(50, 5000.1, volume=0), T0)) == "malformed"
    assert code(chain.decide_insert(order(50, 5000.1, instrument="XX1"), T0)) == "unknown_instrument"


# --- kill switch ----------------------------------------------------------------------------

def test_kill_switch_refuses_everything_new_and_resume() -> None:
    chain = make()
    resting(chain, 1)
    assert chain.kill(cancel_all=False) == []
    assert code(chain.decide_insert(order(2, 4000.0), T0)) == "kill_switch"
    assert code(chain.decide_cancel(cancel(1), T0)) == "kill_switch"
    chain.resume()
    assert chain.decide_insert(order(2, 4000.0), T0) is None
    assert chain.decide_cancel(cancel(1), T0) is None


def test_kill_switch_cancel_all_returns_the_working_orders() -> None:
    chain = make(max_daily_cancels=1)
    resting(chain, 2)
    resting(chain, 1, account="sim-b", first_ref=7)
    assert chain.decide_insert(order(5, 5000.0, price_type=FAK), T0) is None
    assert chain.decide_cancel(cancel(2), T0) is None  # already pending: not cancelled again
    to_cancel = chain.kill(cancel_all=True, now_ns=T0 + 1)
    assert sorted((o.account, o.order_ref) for o in to_cancel) == [("sim-a", 1), ("sim-b", 7)]
    assert all(o.cancel_requested for o in to_cancel)
    assert chain.kill(cancel_all=True, now_ns=T0 + 2) == []
    chain.resume()
    assert code(chain.decide_cancel(cancel(1), T0 + 3)) == "unknown_order"


# --- runtime limits -------------------------------------------------------------------------

def test_set_validates_and_leaves_the_limits_alone_on_error() -> None:
    chain = make(accounts={"sim-a": {"max_orders_per_s": 2}}, max_order_volume=5)
    before = chain.show()
    for account, key, value, words in [
        ("sim-a", "max_orders_per_s", "0", ["accounts.sim-a.max_orders_per_s", "greater than"]),
        ("sim-a", "max_orders_per_s", "many", ["max_orders_per_s", "integer"]),
        ("sim-a", "max_order_notional", "-1", ["max_order_notional", "greater than 0"]),
        ("sim-a", "self_trade", "sometimes", ["self_trade", "'reject'"]),
        ("sim-a", "max_oders_per_s", "3", ["max_oders_per_s", "unknown key"]),
        ("sim-x", "max_orders_per_s", "3", ["sim-x", "no [accounts.sim-x] table"]),
        ("default", "daily_cancels_warn", "10", []),
    ]:
        if not words:
            chain.set(account, key, value)
            with pytest.raises(LimitError, match=r"daily_cancels_warn.*below max_daily_cancels"):
                chain.set("default", "max_daily_cancels", "10")
            chain.set(account, key, None)
            continue
        with pytest.raises(LimitError) as raised:
            chain.set(account, key, value)
        for word in words:
            assert word in str(raised.value), (word, str(raised.value))
        assert chain.show() == before
    assert chain.set("sim-a", "max_order_volume", "7") == {"max_orders_per_s": 2,
                                                           "max_order_volume": 7}


def test_set_takes_effect_at_once_and_keeps_the_rate_window() -> None:
    chain = make(accounts={"sim-a": {}})
    for i in range(70):  # more than the window remembers before a limit asks for more
        assert chain.decide_insert(order(100 + i, 2000.0 + i), T0 - 2 * S + i) is None
    assert chain.decide_insert(order(1, 4000.0), T0) is None
    chain.set("default", "max_orders_per_s", 3)  # the order before it counts already
    for i in range(1, 3):
        assert chain.decide_insert(order(i + 1, 4000.0 + i), T0 + i) is None
    assert code(chain.decide_insert(order(9, 3000.0), T0 + 10)) == "order_rate"
    chain.set("sim-a", "max_orders_per_s", 100)  # a larger window keeps what it saw
    chain.set("sim-a", "max_orders_per_s", 4)
    assert chain.decide_insert(order(9, 3000.0), T0 + 10) is None
    chain.set("sim-a", "max_orders_per_s", "2")  # the last second's 4 orders still count
    assert code(chain.decide_insert(order(10, 3000.2), T0 + 20)) == "order_rate"
    chain.set("default", "max_order_volume", 1)
    assert code(chain.decide_insert(order(11, 3000.4, 2), T0 + S + 20)) == "max_volume"


def test_counts_for_metrics() -> None:
    chain = make(max_order_volume=1)
    chain.decide_insert(order(1), T0)
    chain.decide_insert(order(2, volume=2), T0)
    chain.decide_cancel(cancel(5), T0)
    assert chain.counts() == {"accepted_insert": 1, "accepted_cancel": 0, "alerts": 0,
                              "rejected_max_volume": 1, "rejected_unknown_order": 1}


def test_the_bench_flow_passes_every_check_on_both_sides() -> None:
    """``bench risk`` times the whole chain: every check on, none refusing (a refusal would
    stop the chain early and flatter the figure), and the peer refusing nothing either."""
    from hft.bench import risk
    from hft.bench.risk_peer import PeerRiskEngine

    flow = risk.Flow(3000, PRODUCTS)
    limits = validate({"default": risk.LIMITS}, "bench")
    assert set(risk.LIMITS) == set(limits.default.model_dump(exclude_none=True))
    inserts, cancels, refused = risk._ours(flow, limits, PRODUCTS)
    assert refused == 0 and len(inserts) + len(cancels) == 3000 and len(cancels) > 1000
    engine = PeerRiskEngine(flow.contracts, risk.PEER_SETTINGS)
    for request, update in flow.peer:
        assert request is None or engine.check_allowed(request, "CTP")
        engine.on_order(update)
    assert engine.refusals == 0


def test_restore_rebuilds_counters_without_checking_again() -> None:
    """After a restart the desk replays the decisions it journaled: the rate window, the day's
    cancels and the working orders continue where they were, whatever the limits say now."""
    chain = make(max_orders_per_s=2, max_daily_cancels=1, max_order_volume=1)
    assert chain.restore_insert(order(1, volume=5), T0) is None  # over today's max_volume
    assert chain.restore_insert(order(2, 4000.0), T0 + 1) is None
    assert chain.restore_cancel(cancel(1), T0 + 2) is None
    assert code(chain.restore_cancel(cancel(7), T0 + 2)) == "unknown_order"
    assert code(chain.restore_insert(order(3, instrument="XX2101"), T0 + 2)) == "unknown_instrument"
    assert chain.counts() == {"accepted_insert": 0, "accepted_cancel": 0, "alerts": 0}
    assert code(chain.decide_insert(order(4, 3000.0), T0 + 3)) == "order_rate"
    assert code(chain.decide_cancel(cancel(2), T0 + S)) == "daily_cancels"
    assert code(chain.decide_cancel(cancel(1), T0 + S)) == "unknown_order"  # already pending
    chain.kill(cancel_all=False)
    assert chain.restore_insert(order(5, 3000.0), T0 + S) is None  # decided before the kill

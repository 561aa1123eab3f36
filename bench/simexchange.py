"""``bench sim-exchange``: what the simulated exchange costs per order and per tick.

- ``passive_orders_per_s``: ORDER_SEND records that rest (counter checks, the order reaching
  the exchange, its queue position, two returns each); ``cancels_per_s``: cancelling them;
  ``crossing_orders_per_s``: FAK orders that each take one lot from the book (three
  returns each). Zero latency, so each order is matched inside ``submit``.
- ``ticks_per_s``: ticks of a five-level book wandering within a band, with 1,000 working
  orders (500 a side, five per price over 100 prices just outside the band, so the deepest
  displayed levels reach some of them and trades never go through them): each tick moves the
  queues of the orders at the displayed prices it shows, and no others.
  ``idle_ticks_per_s`` is the same stream with no order working: the floor of reading a tick.

The peer, in the same run, is the matching loop of vn.py's CTA backtester
(``cross_limit_order``): on each tick, every working order is compared with the best quotes
(no queue model at all); it runs over the first twentieth of the same ticks (it is that much
slower) with the same 1,000 order prices, and ``ratio`` is our ticks/s over its. There is no
peer for the order rates: vn.py's backtester does not check or book orders the way a counter
does. ``noise_pct`` is the spread (max - min) of our repeated tick runs over their median: the
machine is shared, so read the figures with it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from hft.bench.common import Result, result
from hft.daemons.runtime.events import DEPTH, Direction, EventType, PriceType, empty
from hft.daemons.trade.simexchange import SimExchange, SimExchangeConfig

INSTRUMENT = b"IF2101"
TICK = 0.2
MID = 5000.0
BAND_TICKS = 10
"""The best quotes wander within MID +- BAND_TICKS ticks."""
WORKING = 1000
PER_PRICE = 5
PEER = ("vn.py CTA backtester's cross_limit_order pattern: every working order compared with "
        "the best quotes on each tick (no queue model)")


def run(quick: bool) -> list[Result]:
    n_ticks = 20_000 if quick else 200_000
    n_orders = 5_000 if quick else 50_000
    repeats = 3 if quick else 5
    ticks = _ticks(n_ticks)
    rows = list(ticks)
    ours = [_tick_run(rows, WORKING) for _ in range(repeats)]
    idle = [_tick_run(rows, 0) for _ in range(repeats)]
    peer_n = n_ticks // 20  # the peer is much slower: fewer ticks, the same stream
    theirs = [_peer_run(ticks[:peer_n]) for _ in range(repeats)]
    ours_rate = float(np.median([n_ticks * 1e9 / ns for ns in ours]))
    peer_rate = float(np.median([peer_n * 1e9 / ns for ns in theirs]))
    passive, cancels = _order_rates(rows[0], n_orders, repeats)
    crossing = _crossing_rate(rows[0], n_orders, repeats)
    spread = (max(ours) - min(ours)) / float(np.median(ours))
    return [result(
        "sim-exchange",
        {"ticks_per_s": ours_rate, "ns_per_tick": 1e9 / ours_rate,
         "idle_ticks_per_s": float(np.median([n_ticks * 1e9 / ns for ns in idle])),
         "passive_orders_per_s": passive, "cancels_per_s": cancels,
         "crossing_orders_per_s": crossing, "noise_pct": 100.0 * spread},
        params={"n": n_ticks, "peer_n": peer_n, "orders": n_orders, "working": WORKING,
                "repeats": repeats,
                "depth": DEPTH, "queue_model": "risk_averse"},
        quick=quick, baseline=(PEER, {"ticks_per_s": peer_rate}), ratio=ours_rate / peer_rate)]


def _config() -> SimExchangeConfig:
    return SimExchangeConfig(accounts={"bench": 1e15})


def _ticks(count: int) -> np.ndarray:
    """A bounded random walk of the best quotes, five levels a side, trades at the touch."""
    rng = np.random.default_rng(11)
    steps = rng.integers(-1, 2, count)
    offset = np.zeros(count, dtype=np.int64)
    for i in range(1, count):
        offset[i] = min(BAND_TICKS, max(-BAND_TICKS, offset[i - 1] + steps[i]))
    bid = np.round(MID + offset * TICK, 1)
    ticks = empty(EventType.MARKET_DATA, count)
    ticks["ts_ns"] = 1_609_723_800_000_000_000 + np.arange(count) * 500_000_000
    ticks["trading_day"] = 20210104
    ticks["instrument"] = INSTRUMENT
    ticks["upper_limit_price"], ticks["lower_limit_price"] = 5500.0, 4500.0
    levels = np.arange(DEPTH) * TICK
    ticks["bid_price"] = np.round(bid[:, None] - levels, 1)
    ticks["ask_price"] = np.round(bid[:, None] + TICK + levels, 1)
    ticks["bid_volume"] = rng.integers(1, 50, (count, DEPTH))
    ticks["ask_volume"] = rng.integers(1, 50, (count, DEPTH))
    traded = rng.integers(0, 8, count)
    at_bid = rng.random(count) < 0.5
    ticks["last_price"] = np.where(at_bid, bid, np.round(bid + TICK, 1))
    ticks["volume"] = np.cumsum(traded)
    ticks["turnover"] = np.cumsum(traded * ticks["last_price"] * 300)
    return ticks


def _order(ref: int, direction: Direction, price: float, price_type: PriceType) -> Any:
    record = empty(EventType.ORDER_SEND)
    record["trading_day"], record["instrument"], record["account"] = 20210104, INSTRUMENT, b"bench"
    record["order_ref"], record["price"], record["volume"] = ref, price, 1
    record["direction"], record["price_type"] = direction, price_type
    return record[0]


def _working(exchange: SimExchange, first_tick: Any, count: int) -> None:
    """``count`` resting orders just outside the band, PER_PRICE per price, half a side."""
    exchange.on_tick(first_tick)
    lowest_bid = MID - BAND_TICKS * TICK - (DEPTH - 2) * TICK
    highest_ask = MID + TICK + BAND_TICKS * TICK + (DEPTH - 2) * TICK
    for ref in range(count):
        step = (ref // 2) // PER_PRICE
        if ref % 2:
            exchange.submit(_order(ref + 1, Direction.SELL, round(highest_ask + step * TICK, 1),
                                   PriceType.LIMIT))
        else:
            exchange.submit(_order(ref + 1, Direction.BUY, round(lowest_bid - step * TICK, 1),
                                   PriceType.LIMIT))


def _tick_run(rows: list[Any], working: int) -> int:
    exchange = SimExchange(_config(), lambda record: None)
    _working(exchange, rows[0], working)
    if exchange.working() != working:
        raise RuntimeError(f"{exchange.working()} of {working} orders are working")
    on_tick = exchange.on_tick
    start = time.perf_counter_ns()
    for row in rows:
        on_tick(row)
    elapsed = time.perf_counter_ns() - start
    if exchange.working() != working:  # the band keeps trades off the orders: none may fill
        raise RuntimeError("an order filled: the benchmark's band is wrong")
    return elapsed


def _order_rates(first_tick: Any, count: int, repeats: int) -> tuple[float, float]:
    submits, cancels = [], []
    for _ in range(repeats):
        exchange = SimExchange(_config(), lambda record: None)
        exchange.on_tick(first_tick)
        orders = [_order(ref, Direction.BUY, round(MID - 20 * TICK - (ref % 50) * TICK, 1),
                         PriceType.LIMIT) for ref in range(1, count + 1)]
        cancel = empty(EventType.CANCEL_REQ)
        cancel["account"] = b"bench"
        requests = [cancel.copy() for _ in range(count)]
        for ref, request in enumerate(requests, start=1):
            request["order_ref"] = ref
        submit = exchange.submit
        start = time.perf_counter_ns()
        for order in orders:
            submit(order)
        middle = time.perf_counter_ns()
        for request in requests:
            exchange.cancel(request[0])
        end = time.perf_counter_ns()
        submits.append(count * 1e9 / (middle - start))
        cancels.append(count * 1e9 / (end - middle))
        if exchange.working():
            raise RuntimeError(f"{exchange.working()} orders survived their cancel")
    return float(np.median(submits)), float(np.median(cancels))


def _crossing_rate(first_tick: Any, count: int, repeats: int) -> float:
    rates = []
    tick = first_tick.copy()
    tick["ask_volume"] = 2_000_000_000  # liquidity for every order
    for _ in range(repeats):
        exchange = SimExchange(_config(), lambda record: None)
        exchange.on_tick(tick)
        price = float(tick["ask_price"][0])
        orders = [_order(ref, Direction.BUY, price, PriceType.FAK) for ref in range(1, count + 1)]
        submit = exchange.submit
        start = time.perf_counter_ns()
        for order in orders:
            submit(order)
        rates.append(count * 1e9 / (time.perf_counter_ns() - start))
    return float(np.median(rates))


def _peer_run(ticks: np.ndarray) -> int:
    """vn.py's cross_limit_order over the same ticks: each tick, every working order."""
    lowest_bid = MID - BAND_TICKS * TICK - (DEPTH - 2) * TICK
    highest_ask = MID + TICK + BAND_TICKS * TICK + (DEPTH - 2) * TICK
    orders = {}
    for ref in range(WORKING):
        step = (ref // 2) // PER_PRICE
        buy = ref % 2 == 0
        price = lowest_bid - step * TICK if buy else highest_ask + step * TICK
        orders[ref] = _PeerOrder(ref, buy, round(price, 1))
    rows = [_PeerTick(float(t["bid_price"][0]), float(t["ask_price"][0])) for t in ticks]
    start = time.perf_counter_ns()
    for row in rows:
        long_cross_price, short_cross_price = row.ask, row.bid
        for order in list(orders.values()):
            long_cross = order.buy and order.price >= long_cross_price > 0
            short_cross = not order.buy and order.price <= short_cross_price and short_cross_price > 0
            if long_cross or short_cross:
                del orders[order.ref]  # (a fill, in vn.py)
    elapsed = time.perf_counter_ns() - start
    if len(orders) != WORKING:
        raise RuntimeError("the peer filled an order: the benchmark's band is wrong")
    return elapsed


class _PeerOrder:
    __slots__ = ("buy", "price", "ref")

    def __init__(self, ref: int, buy: bool, price: float) -> None:
        self.ref, self.buy, self.price = ref, buy, price


class _PeerTick:
    __slots__ = ("ask", "bid")

    def __init__(self, bid: float, ask: float) -> None:
        self.bid, self.ask = bid, ask

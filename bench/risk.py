"""``bench risk``: the whole pre-trade check chain per order, in process (``risk``) and
across processes (``risk.across``: an ORDER_REQ committed to the engine journal -> the gateway
call in a real risk daemon), against vn.py's risk manager on the same order flow in the same
run.

Across processes: this process commits limit orders to an engine journal, one every
``interval`` (stamping ``time.monotonic_ns()`` just before each commit); a risk daemon (block
mode) runs the order desk, which decides each with the chain, commits the ORDER_SEND to the
risk journal and publishes it, and ``engine_plugins.GatewayProbe`` in the gateway's place,
which stamps its arrival and fills it (so positions, fills and POS_UPDATEs are journaled as in
trading). vn.py calls its risk check and then the gateway in the strategy's own thread, so its
whole order path is the in-process check: the peer of that row is the same check's latency.

The flow: two accounts on four instruments (two CFFEX, two SHFE), one request per ms: limit
inserts that cross nothing and break no limit (buys below the last price, sells above it,
several ticks apart) until an account has 20 working orders, then a cancel of its oldest
before each insert, so the chain runs every check it has to the end, self-trade looks at a
book of resting orders, and the working set stays bounded. Every check is on (limits loose
enough to pass). Each decision is timed alone (``perf_counter_ns`` around the call, its ~50
ns included on both sides); the exchange's returns (cancel confirmations) are fed between
decisions, untimed. Records are built before timing, as the journal reader hands over views;
the peer gets vn.py ``OrderRequest`` objects built beforehand too, and its order updates
untimed.

The peer is :mod:`hft.bench.risk_peer` (vnpy_riskmanager 2.0's checks re-implemented,
since the package does not import without vn.py's optional dependencies). vn.py checks no
cancels, so the ratio compares inserts only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from vnpy.trader.constant import Direction as VnDirection
from vnpy.trader.constant import Exchange, OrderType, Product, Status
from vnpy.trader.constant import Offset as VnOffset
from vnpy.trader.object import ContractData, OrderData, OrderRequest

from hft.bench.common import BenchError, Result, percentiles, result, temp_dir, wait_until
from hft.bench.engine import daemon_process, risk_section
from hft.bench.risk_peer import PEER, PeerRiskEngine
from hft.daemons.refdata.instruments import ProductTable
from hft.daemons.risk.chain import RiskChain
from hft.daemons.risk.limits import validate
from hft.daemons.runtime.events import Direction, EventType, Offset, OrderStatus, empty
from hft.daemons.runtime.journal import JournalWriter, WaitMode

ACCOUNTS = ("sim-a", "sim-b")
INSTRUMENTS = {"IF2101": 5000.0, "IC2101": 6000.0, "rb2105": 4000.0, "cu2105": 58000.0}
T0 = 1_609_723_800 * 1_000_000_000  # 2021-01-04 09:30 China time
STEP_NS = 1_000_000
WORKING = 20
"""Orders each account keeps working: a full one cancels its oldest before the next insert."""
LIMITS = {  # every check on, loose enough for the flow to pass
    "max_orders_per_s": 2000, "max_cancels_per_s": 2000, "max_order_volume": 100,
    "max_order_notional": 1e9, "max_ticks_from_last": 50, "max_net_position": 10_000,
    "max_gross_position": 20_000, "max_working_orders": 200, "duplicate_window_ms": 20,
    "self_trade": "reject", "cancel_ratio_min_orders": 100, "cancel_ratio_warn": 1.5,
    "cancel_ratio_limit": 2.0, "max_daily_cancels": 100_000, "daily_cancels_warn": 99_999,
    "max_daily_loss": 1e6}
PEER_SETTINGS: dict[str, dict[str, Any]] = {
    "OrderSize": {"order_volume_limit": 100, "order_value_limit": 1e9},
    "ActiveOrders": {"active_order_limit": 400},
    "DailyLimits": {name: 10**9 for name in (
        "total_order_limit", "total_cancel_limit", "total_trade_limit", "contract_order_limit",
        "contract_cancel_limit", "contract_trade_limit")},
    "DuplicateOrders": {"duplicate_order_limit": 10**9}}


class FixedPositions:
    """The chain's position view with a few lots and a loss in every account and instrument,
    so position_limit and loss_limit have something to weigh (a dict lookup per question)."""

    def __init__(self) -> None:
        self._lots = {(account, instrument): (3, 1) for account in ACCOUNTS
                      for instrument in INSTRUMENTS}
        self._pnl = dict.fromkeys(ACCOUNTS, -250.0)

    def lots(self, account: str, instrument: str) -> tuple[int, int]:
        return self._lots.get((account, instrument), (0, 0))

    def pnl(self, account: str) -> float:
        return self._pnl.get(account, 0.0)


class Flow:
    """The requests, as records for the chain and as vn.py objects for the peer."""

    def __init__(self, n: int, products: ProductTable) -> None:
        self.ticks = []
        for instrument, last in INSTRUMENTS.items():
            tick = empty(EventType.MARKET_DATA)[0]
            tick["instrument"], tick["last_price"] = instrument.encode(), last
            tick["upper_limit_price"], tick["lower_limit_price"] = last * 1.1, last * 0.9
            self.ticks.append(tick)
        inserts, cancels = empty(EventType.ORDER_REQ, n), empty(EventType.CANCEL_REQ, n)
        returns = empty(EventType.RTN_ORDER, n)
        self.requests: list[tuple[bool, Any, int, Any]] = []  # insert?, record, ts, rtn
        self.peer: list[tuple[OrderRequest | None, OrderData]] = []
        contracts = {}
        working: dict[str, list[tuple[int, OrderData]]] = {account: [] for account in ACCOUNTS}
        for i in range(n):
            account = ACCOUNTS[i % 2]
            ts = T0 + i * STEP_NS
            if len(working[account]) >= WORKING:
                ref, order = working[account].pop(0)
                cancels[i]["order_ref"], cancels[i]["account"] = ref, account.encode()
                cancels[i]["instrument"] = order.symbol.encode()
                returns[i]["order_ref"], returns[i]["account"] = ref, account.encode()
                returns[i]["status"] = OrderStatus.CANCELLED
                self.requests.append((False, cancels[i], ts, returns[i]))
                self.peer.append((None, _with_status(order, Status.CANCELLED)))
                continue
            instrument = list(INSTRUMENTS)[(i // 2) % len(INSTRUMENTS)]
            product = products.product_of(instrument)
            buy = (i // 8) % 2 == 0
            away = (1 + i % 7) * product.price_tick
            price = round(INSTRUMENTS[instrument] + (-away if buy else away), 6)
            record = inserts[i]
            record["order_ref"], record["account"] = i + 1, account.encode()
            record["instrument"], record["exchange"] = instrument.encode(), product.exchange.encode()
            record["price"], record["volume"], record["direction"] = price, 1 + i % 3, 0 if buy else 1
            record["offset"], record["price_type"] = 0, 0
            self.requests.append((True, record, ts, None))
            exchange = Exchange(product.exchange)
            contracts[instrument] = ContractData(
                symbol=instrument, exchange=exchange, name=instrument, product=Product.FUTURES,
                size=product.multiplier, pricetick=product.price_tick, gateway_name="CTP")
            request = OrderRequest(symbol=instrument, exchange=exchange,
                                   direction=VnDirection.LONG if buy else VnDirection.SHORT,
                                   type=OrderType.LIMIT, volume=1 + i % 3, price=price,
                                   offset=VnOffset.OPEN, reference=account)
            order = request.create_order_data(str(i + 1), "CTP")
            order.status = Status.NOTTRADED
            self.peer.append((request, order))
            working[account].append((i + 1, order))
        self.contracts = list(contracts.values())


def _with_status(order: OrderData, status: Status) -> OrderData:
    update = OrderData(symbol=order.symbol, exchange=order.exchange, orderid=order.orderid,
                       type=order.type, direction=order.direction, offset=order.offset,
                       price=order.price, volume=order.volume, gateway_name=order.gateway_name)
    update.status = status
    return update


def run(quick: bool) -> list[Result]:
    n = 15_000 if quick else 60_000
    repeats = 3 if quick else 5
    products = ProductTable.load()
    flow = Flow(n, products)
    limits = validate({"default": LIMITS}, "bench")
    runs = [(_ours(flow, limits, products), _theirs(flow)) for _ in range(repeats)]
    warm = runs[1:]  # the first run pays for first calls (imports, caches): left out
    inserts = np.concatenate([ours[0] for ours, _ in warm])
    cancels = np.concatenate([ours[1] for ours, _ in warm])
    peer = np.concatenate([theirs for _, theirs in warm])
    refused = runs[-1][0][2]
    ours_figures = {**percentiles(inserts), **percentiles(cancels, prefix="cancel_")}
    peer_figures = percentiles(peer)
    return [result(
        "risk",
        {**ours_figures, "refused": refused},
        quick=quick,
        params={"n": n, "repeats": repeats, "runs_pooled": len(warm),
                "inserts": int(len(inserts) / len(warm)), "cancels": int(len(cancels) / len(warm)),
                "checks": sorted(LIMITS),
                "flow": f"2 accounts x 4 instruments, 1 request/ms, {WORKING} orders working "
                        "per account (a cancel before each insert); every check on"},
        baseline=(PEER, peer_figures),
        ratio=peer_figures["p50_us"] / ours_figures["p50_us"],
        target={"p50_us_max": 10.0},
    ), _across(quick, peer_figures)]


def _across(quick: bool, peer_figures: dict[str, float]) -> Result:
    n, interval_ns, warmup = (2_000 if quick else 10_000), 500_000, 200
    with temp_dir("risk-across") as directory:
        total = _desk_latency(directory, n + warmup, interval_ns)[warmup:]
    figures = percentiles(total)
    return result(
        "risk.across", figures, quick=quick,
        params={"n": n, "warmup_dropped": warmup, "interval_us": interval_ns / 1000,
                "mode": "block",
                "path": "engine journal commit -> order_desk (read, chain, ORDER_SEND commit) "
                        "-> the gateway's ORDER_SEND handler",
                "limits": "the desk's default (the structural checks)"},
        baseline=(f"{PEER}: the in-process check, vn.py's whole path from send_order to the "
                  "gateway", peer_figures),
        ratio=peer_figures["p99_us"] / figures["p99_us"],
    )


def _desk_latency(directory: Path, n: int, interval_ns: int) -> np.ndarray:
    """ns from each order's commit to the engine journal to its gateway call."""
    samples = directory / "gateway.npy"
    config = directory / "hft.toml"
    config.write_text(f'[paths]\nhome = "{directory / "home"}"\n'
                      + risk_section(directory, samples, WaitMode.BLOCK))
    orders = empty(EventType.ORDER_REQ, n)
    orders["order_ref"] = np.arange(1, n + 1)
    orders["instrument"], orders["exchange"], orders["account"] = b"IF2101", b"CFFEX", b"bench"
    orders["price"], orders["volume"] = 5000.0, 1
    orders["direction"][1::2], orders["offset"][1::2] = Direction.SELL, Offset.CLOSE  # flat again
    committed = np.zeros(n + 1, np.int64)  # by order_ref
    with JournalWriter(directory / "home" / "journal", "engine") as writer, \
            daemon_process("risk", config, directory / "risk.sock", [samples]):
        clock, append = time.monotonic_ns, writer.append
        due = clock()
        for ref, order in enumerate(orders, 1):
            due += interval_ns
            wait_until(due)
            order["ts_ns"] = time.time_ns()
            committed[ref] = clock()
            append(order)
        time.sleep(0.5)
    calls = np.load(samples)  # (order_ref, gateway ns)
    if len(calls) < n * 0.99:
        raise BenchError(f"{len(calls)} of {n} orders reached the gateway")
    latency: np.ndarray = calls[:, 1] - committed[calls[:, 0]]
    return latency


def _ours(flow: Flow, limits: Any, products: ProductTable) -> tuple[np.ndarray, np.ndarray, int]:
    """ns per insert decision and per cancel decision, and how many were refused."""
    chain = RiskChain(limits, products)
    chain.set_position_view(FixedPositions())
    for tick in flow.ticks:
        chain.on_tick(tick)
    decide_insert, decide_cancel, on_order = chain.decide_insert, chain.decide_cancel, chain.on_order
    clock = time.perf_counter_ns
    insert_ns, cancel_ns = [], []
    refused = 0
    for is_insert, record, ts, rtn in flow.requests:
        if is_insert:
            start = clock()
            rejection = decide_insert(record, ts)
            insert_ns.append(clock() - start)
        else:
            start = clock()
            rejection = decide_cancel(record, ts)
            cancel_ns.append(clock() - start)
            if rejection is None:
                on_order(rtn)
        refused += rejection is not None
    return np.array(insert_ns), np.array(cancel_ns), refused


def _theirs(flow: Flow) -> np.ndarray:
    """ns per vn.py check_allowed, order updates fed untimed."""
    engine = PeerRiskEngine(flow.contracts, PEER_SETTINGS)
    check: Callable[[OrderRequest, str], bool] = engine.check_allowed
    clock = time.perf_counter_ns
    samples = []
    for request, update in flow.peer:
        if request is not None:
            start = clock()
            allowed = check(request, "CTP")
            samples.append(clock() - start)
            if allowed:
                engine.on_order(update)
        else:
            engine.on_order(update)
    engine.drain()
    return np.array(samples)

"""StrategyContainer: child strategies (plugins) whose targets are netted into one set of orders.

- Children are plugins (entry point, ``module:Class`` or a file, each with its own config), a
  weight and an enabled flag, from the ``children`` table of the config or loaded at run time.
- The container subscribes to MARKET_DATA, BAR, TIMER, POS_UPDATE, RTN_ORDER, RTN_TRADE,
  RISK_REJECT and (while a child handles it) FACTOR, books what concerns it (router),
  forwards each event to its children's bus, and only then trades: for every instrument
  whose targets or position moved, the net target is ``round(sum of weight x target)`` over
  the children that count, and the orders for the difference from the position go out as
  ORDER_REQ (``source`` = the container's id, a unique ``order_ref``). Two children reacting
  to one tick never trade against each other.
- A disabled, unloaded or failed child wants 0: its share is traded out. An unloaded child's
  book (lots, PnL) stays, and a child loaded again under the same name takes it back.
- Fills are attributed to the children as the ledger module describes.
- Children loaded at run time live as long as the container's instance: put them in the
  config to have them back after a reload or restart of the container (its book then starts
  from the account's POS_UPDATE, in the house).
- A tick that makes orders adds a sample to ``hft_strategy_tick_to_order_seconds``: from the
  tick's ``ts_ns`` (hft_md's receive time) to its last ORDER_REQ published (and, with the
  order link, journaled for the risk daemon). A tick made more than ``LIVE_TICK_NS`` earlier
  is a replayed one (a backtest, a catch-up) and is not counted.

Commands (``hftctl plugins command DAEMON NAME CMD --args JSON``): ``list``; ``load``
{name, spec, config?, weight?, enabled?}; ``unload``, ``reload``, ``enable``, ``disable``
{name}; ``weight`` {name, weight}. Each answers with the child's state and book.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import BaseModel, ConfigDict, Field

from hft.daemons.engine.strategy.child import StrategyHost
from hft.daemons.engine.strategy.ledger import (
    HOUSE,
    Party,
    instrument_id,
    instrument_key,
    shares,
)
from hft.daemons.engine.strategy.router import Instrument, OrderRouter
from hft.daemons.runtime.bus import EventBus, Handler
from hft.daemons.runtime.config import PluginName
from hft.daemons.runtime.events import HEADER_DTYPE, EventType, PriceType, fields_struct
from hft.daemons.runtime.journal import JournalReader
from hft.daemons.runtime.latency import LatencySamples
from hft.daemons.runtime.plugins import (
    HostServices,
    LoadedPlugin,
    Plugin,
    PluginContext,
    PluginManager,
    PluginState,
    Poller,
)

_OWN_RETURNS = frozenset({EventType.RTN_ORDER, EventType.RTN_TRADE, EventType.RISK_REJECT})
_SOURCE = fields_struct(HEADER_DTYPE, ("source",)).unpack_from
LIVE_TICK_NS = 1_000_000_000
"""A tick older than this when its orders go out was not live: its latency is not sampled."""
_PRICE_TYPES = {"limit": PriceType.LIMIT, "market": PriceType.MARKET, "fak": PriceType.FAK,
                "fok": PriceType.FOK}


class ChildConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: str = Field(min_length=1)
    """Entry point name, ``module:Class`` or a .py file (``file.py:Class``)."""
    config: dict[str, Any] = {}
    weight: float = Field(default=1.0, ge=0.0, allow_inf_nan=False)
    """Its targets are multiplied by this before netting."""
    enabled: bool = True


class ContainerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account: str = Field(default="", max_length=16)
    """Investor account of the orders; POS_UPDATEs of other accounts are ignored ("" = any)."""
    source_id: int | None = Field(default=None, ge=0, lt=2**32)
    """The ``source`` of its ORDER_REQs (default: a hash of the plugin name)."""
    price_type: Literal["limit", "market", "fak", "fok"] = "fak"
    """FAK by default: an order never rests, so a new target is never held up by it."""
    slippage_ticks: int = Field(default=0, ge=0)
    """Price ticks beyond the opposite best quote."""
    retry_after_s: float = Field(default=1.0, ge=0.0)
    """How long an instrument waits after a rejected order."""
    cancel_after_s: float = Field(default=5.0, ge=0.0, allow_inf_nan=False)
    """An order still working this long after it was sent (on the data's clock) is cancelled,
    so a resting limit order does not hold its instrument forever; 0: never."""
    children: dict[PluginName, ChildConfig] = {}


class _Named(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: PluginName


class _Load(ChildConfig):
    name: PluginName


class _Weight(_Named):
    weight: float = Field(ge=0.0, allow_inf_nan=False)


class StrategyContainer(Plugin):
    """Plugin: hosts child strategies and trades the net of their targets."""

    Config = ContainerConfig

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        config: ContainerConfig = ctx.config
        self.house = Party(HOUSE)
        self.parties: dict[str, Party] = {}
        self._dirty: set[Instrument] = set()
        self._flushing = False
        self.router = OrderRouter(
            ctx.bus, source=config.source_id if config.source_id is not None
            else zlib.crc32(ctx.name.encode()), account=config.account,
            price_type=_PRICE_TYPES[config.price_type], slippage_ticks=config.slippage_ticks,
            retry_after_s=config.retry_after_s, cancel_after_s=config.cancel_after_s,
            house=self.house, on_change=self._mark)
        self.tick_to_order = LatencySamples()
        self.children_bus = _ChildrenBus(self._children_subscribed)
        self._children_only: dict[int, Callable[[Any], None]] = {
            EventType.FACTOR: self._relay(EventType.FACTOR, None)}
        """Relays of the types the router does not book: subscribed while a child handles
        the type (``_children_subscribed``), so no tick pays for relaying factor values
        nobody reads."""
        self.children = PluginManager(self.children_bus, _ChildHost(self, ctx.host),
                                      ctx.log.getChild("child"))
        router = self.router
        for event_type, book in ((EventType.MARKET_DATA, router.on_tick),
                                 (EventType.BAR, router.on_bar),
                                 (EventType.TIMER, router.on_timer),
                                 (EventType.POS_UPDATE, router.on_position),
                                 (EventType.RTN_ORDER, router.on_order),
                                 (EventType.RTN_TRADE, router.on_trade),
                                 (EventType.RISK_REJECT, router.on_reject)):
            ctx.subscribe(event_type, self._relay(event_type, book))
        ctx.subscribe(EventType.ORDER_REQ, router.adopt)  # its own, recovered after a restart
        for name, child in config.children.items():
            self._load(name, child, start=False)

    def start(self) -> None:
        self.children.start_all()
        for party in self.parties.values():
            self._recount(party)
        self.flush()

    def stop(self) -> None:
        self.children.stop_all()

    def metrics(self) -> Iterable[Metric]:
        return _families([self])

    # --- what children call (through their host) ------------------------------------------

    def set_target(self, party: Party, instrument: str | bytes, lots: float) -> None:
        """``party`` wants ``lots`` of ``instrument``; traded once the current event is done."""
        if not math.isfinite(lots):
            raise ValueError(f"target lots must be a finite number, got {lots!r}")
        key = instrument_key(instrument)
        tradable = self.router.instrument(key)  # refuses an instrument it cannot trade
        holding = party.holding(key)
        if holding.target != lots:
            holding.target = lots
            if party.counts:
                self._mark(tradable)

    def pnl(self, party: Party) -> float:
        return party.pnl(self._mark_price)

    def flush(self) -> None:
        """Trade every instrument marked since the last flush (not re-entered: an order
        filled synchronously marks its instrument again and this loop picks it up)."""
        if self._flushing:
            return
        self._flushing = True
        try:
            while self._dirty:
                self._rebalance(self._dirty.pop())
        finally:
            self._flushing = False

    # --- commands ---------------------------------------------------------------------------

    def command(self, name: str, args: Mapping[str, Any]) -> Any:
        """Run a control command (module docstring); ValueError for a bad one."""
        commands: dict[str, Callable[[Mapping[str, Any]], Any]] = {
            "list": self._list, "load": self._load_command, "unload": self._unload,
            "reload": self._reload, "enable": lambda a: self._enable(a, True),
            "disable": lambda a: self._enable(a, False), "weight": self._weight}
        handler = commands.get(name)
        if handler is None:
            raise ValueError(f"unknown command {name!r}; known: {', '.join(commands)}")
        result = handler(args)
        self.flush()  # before answering: the answer shows the book after the trades
        return self._info(result) if isinstance(result, Party) else result

    def _list(self, args: Mapping[str, Any]) -> dict[str, Any]:
        if args:
            raise ValueError(f"list takes no arguments, got {sorted(args)}")
        return {"children": [self._info(p) for p in (*self.parties.values(), self.house)],
                "instruments": {i.id: self._instrument_info(i) for i in self.router.involved()}}

    def _load_command(self, args: Mapping[str, Any]) -> Party:
        request = _Load.model_validate(args)
        child = ChildConfig.model_validate(request.model_dump(exclude={"name"}))
        return self._load(request.name, child, start=True)

    def _unload(self, args: Mapping[str, Any]) -> Party:
        name = _Named.model_validate(args).name
        self.children.unload(name)
        return self._recount(self._party(name))

    def _reload(self, args: Mapping[str, Any]) -> Party:
        name = _Named.model_validate(args).name
        self.children.reload(name)
        return self._recount(self._party(name))

    def _enable(self, args: Mapping[str, Any], enabled: bool) -> Party:
        party = self._party(_Named.model_validate(args).name)
        party.enabled = enabled
        return self._recount(party)

    def _weight(self, args: Mapping[str, Any]) -> Party:
        request = _Weight.model_validate(args)
        party = self._party(request.name)
        party.weight = request.weight
        return self._recount(party)

    # --- internals --------------------------------------------------------------------------

    def _load(self, name: str, child: ChildConfig, *, start: bool) -> Party:
        if self._entry(name) is not None:
            raise ValueError(f"a child named {name!r} is already loaded; unload it first")
        party = self.parties.get(name)
        if party is None:
            party = self.parties[name] = Party(name)
        party.weight, party.enabled = child.weight, child.enabled
        self.children.load(name, child.spec, child.config, start=start)
        return self._recount(party)

    def _recount(self, party: Party) -> Party:
        """Whether its targets count, after a change of state, flag or weight; every
        instrument it has a say in is rebalanced."""
        entry = self._entry(party.name)
        party.counts = party.enabled and entry is not None and entry.state is PluginState.RUNNING
        for key in party.holdings:
            self._mark(self.router.instrument(key))
        return party

    def _entry(self, name: str) -> LoadedPlugin | None:
        try:
            return self.children.get(name)
        except KeyError:
            return None

    def _party(self, name: str) -> Party:
        party = self.parties.get(name)
        if party is None:
            raise KeyError(f"no child named {name!r}; children: {sorted(self.parties)}")
        return party

    def _relay(self, event_type: EventType, book: Callable[[Any], None] | None
               ) -> Callable[[Any], None]:
        """The handler of one event type: book it, hand it to the children, trade. Returns
        of another container's orders (another ``source``) are not its business."""
        publish, kind = self.children_bus.publish, int(event_type)
        router = self.router
        source, own_only = router.source, event_type in _OWN_RETURNS
        timed = event_type is EventType.MARKET_DATA

        def relay(record: Any) -> None:
            if own_only and _SOURCE(record)[0] != source:
                return
            if book is not None:
                book(record)
            publish(kind, record)
            if self._dirty:
                sent = router.sent
                self.flush()
                if timed and router.sent != sent:
                    self._sample_tick_to_order()

        relay.__qualname__ = f"{type(self).__qualname__}.relay_{event_type.name.lower()}"
        return relay

    def _children_subscribed(self, event_type: int) -> None:
        """A child (un)subscribed ``event_type``: relay it while some child handles it."""
        relay = self._children_only.get(event_type)
        if relay is None:
            return
        relayed = relay in self.ctx.bus.handlers(event_type)
        if self.children_bus.handlers(event_type) and not relayed:
            self.ctx.subscribe(event_type, relay)
        elif not self.children_bus.handlers(event_type) and relayed:
            self.ctx.unsubscribe(event_type, relay)

    def _sample_tick_to_order(self) -> None:
        latency_ns = time.time_ns() - self.router.tick_ns
        if latency_ns < LIVE_TICK_NS:
            self.tick_to_order.add(latency_ns)

    def _mark(self, instrument: Instrument) -> None:
        instrument.stale = True
        self._dirty.add(instrument)

    def _rebalance(self, instrument: Instrument) -> None:
        if not self.router.can_trade(instrument):
            return  # it stays stale: tried again on its next tick or order return
        delta = self._net_target(instrument.key) - instrument.position.net
        instrument.stale = False
        if delta and not self.router.send(instrument, delta, shares(
                self.parties.values(), self.house, instrument.key, delta)):
            instrument.stale = True  # no price yet: tried again on its first tick

    def _net_target(self, key: bytes) -> int:
        return _whole_lots(sum(party.wanted(key) for party in self.parties.values()))

    def _mark_price(self, key: bytes) -> tuple[float, float]:
        instrument = self.router.instruments.get(key)
        return (instrument.last, instrument.multiplier) if instrument else (math.nan, 1.0)

    def _info(self, party: Party) -> dict[str, Any]:
        entry = self._entry(party.name)
        holdings = list(party.holdings.items())
        return {
            "name": party.name,
            "spec": entry.spec if entry else "",
            "state": entry.state.value if entry else ("house" if party is self.house
                                                      else "unloaded"),
            "error": entry.error if entry else "",
            "enabled": party.enabled, "weight": party.weight, "counts": party.counts,
            "targets": {instrument_id(k): h.target for k, h in holdings if h.target},
            "lots": {instrument_id(k): h.lots for k, h in holdings if h.lots},
            "pnl": _json_number(self.pnl(party)),
        }

    def _instrument_info(self, instrument: Instrument) -> dict[str, Any]:
        position = instrument.position
        return {"net_target": self._net_target(instrument.key), "position": position.net,
                "long_today": position.long_today, "long_yesterday": position.long_yesterday,
                "short_today": position.short_today, "short_yesterday": position.short_yesterday,
                "open_orders": instrument.open_orders, "last": _json_number(instrument.last)}


class _ChildrenBus(EventBus):
    """The children's bus; tells the container after each (un)subscription."""

    def __init__(self, subscribed: Callable[[int], None]) -> None:
        super().__init__()
        self._subscribed = subscribed

    def subscribe(self, event_type: int, handler: Handler) -> None:
        super().subscribe(event_type, handler)
        self._subscribed(event_type)

    def unsubscribe(self, event_type: int, handler: Handler) -> None:
        super().unsubscribe(event_type, handler)
        self._subscribed(event_type)


class _ChildHost(StrategyHost):
    """What children see as their host: the daemon's services, with a rebalance after each
    of their timer and poller callbacks (a target set there is traded at once), and the
    container's StrategyHost side."""

    def __init__(self, container: StrategyContainer, host: HostServices) -> None:
        self._container = container
        self._host = host
        self._pollers: dict[Poller, Poller] = {}

    @property
    def journal_dir(self) -> Path:
        return self._host.journal_dir

    @property
    def run_dir(self) -> Path:
        return self._host.run_dir

    def add_poller(self, poller: Poller) -> None:
        def then_flush() -> int:
            handled = poller()
            self._container.flush()
            return handled

        self._pollers[poller] = then_flush
        self._host.add_poller(then_flush)

    def remove_poller(self, poller: Poller) -> None:
        self._host.remove_poller(self._pollers.pop(poller))

    def call_every(self, interval_s: float, callback: Callable[[], object]) -> int:
        def then_flush() -> None:
            callback()
            self._container.flush()

        return self._host.call_every(interval_s, then_flush)

    def cancel_timer(self, timer_id: int) -> None:
        self._host.cancel_timer(timer_id)

    def wake_on(self, reader: JournalReader) -> None:
        self._host.wake_on(reader)

    def stop_waking_on(self, reader: JournalReader) -> None:
        self._host.stop_waking_on(reader)

    def wake(self) -> None:
        self._host.wake()

    def party(self, name: str) -> Party:
        return self._container.parties[name]

    def set_target(self, party: Party, instrument: str | bytes, lots: float) -> None:
        self._container.set_target(party, instrument, lots)

    def pnl(self, party: Party) -> float:
        return self._container.pnl(party)


def _whole_lots(lots: float) -> int:
    """Round half away from zero (1.5 -> 2, -1.5 -> -2)."""
    return int(math.copysign(math.floor(abs(lots) + 0.5), lots))


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _families(containers: Sequence[StrategyContainer]) -> Iterable[Metric]:
    child_labels = ["container", "child"]
    pnl = GaugeMetricFamily("hft_strategy_pnl", "Marked-to-market PnL attributed to each child "
                            "(and the house, '(unattributed)'), CNY", labels=child_labels)
    counts = GaugeMetricFamily("hft_strategy_child_counts", "1 when a child's targets count in "
                               "the net (enabled and running)", labels=child_labels)
    weight = GaugeMetricFamily("hft_strategy_child_weight", "Each child's weight",
                               labels=child_labels)
    lots = GaugeMetricFamily("hft_strategy_lots", "Lots attributed to each child",
                             labels=[*child_labels, "instrument"])
    target = GaugeMetricFamily("hft_strategy_target_lots", "Each child's target before its "
                               "weight", labels=[*child_labels, "instrument"])
    position = GaugeMetricFamily("hft_strategy_position_lots", "The container's net position",
                                 labels=["container", "instrument"])
    open_orders = GaugeMetricFamily("hft_strategy_open_orders", "ORDER_REQs in flight",
                                    labels=["container"])
    errors = CounterMetricFamily("hft_strategy_handler_errors", "Exceptions raised by children's "
                                 "handlers (isolated)", labels=["container", "type", "handler"])
    latencies = [container.tick_to_order.family(
        "hft_strategy_tick_to_order_seconds", "A live tick's ts_ns (hft_md's receive time) to "
        "the last ORDER_REQ it made published (and journaled by the order link)",
        ["container"], [container.ctx.name]) for container in containers]
    counters = [(CounterMetricFamily(f"hft_strategy_{name}", text, labels=["container"]), attr)
                for name, text, attr in (("orders", "ORDER_REQs sent", "sent"),
                                         ("fills", "Fills of its orders", "fills"),
                                         ("rejects", "Orders refused by risk", "rejects"),
                                         ("cancels", "CANCEL_REQs sent for orders that worked "
                                          "too long", "cancels"))]
    for container in containers:
        name = container.ctx.name
        for party in (*list(container.parties.values()), container.house):
            pnl.add_metric([name, party.name], container.pnl(party))
            counts.add_metric([name, party.name], int(party.counts))
            weight.add_metric([name, party.name], party.weight)
            for key, holding in list(party.holdings.items()):
                lots.add_metric([name, party.name, instrument_id(key)], holding.lots)
                target.add_metric([name, party.name, instrument_id(key)], holding.target)
        for instrument in container.router.involved():
            position.add_metric([name, instrument.id], instrument.position.net)
        open_orders.add_metric([name], len(container.router.orders))
        for (event_type, handler), count in list(container.children_bus.handler_errors.items()):
            errors.add_metric([name, EventType(event_type).name, handler], count)
        for family, attr in counters:
            family.add_metric([name], getattr(container.router, attr))
    return (pnl, counts, weight, lots, target, position, open_orders, errors, *latencies,
            *(family for family, _ in counters))



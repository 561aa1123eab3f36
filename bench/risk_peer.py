"""The ``bench risk`` peer: vn.py's pre-trade risk manager (vnpy_riskmanager 2.0), re-implemented.

vnpy_riskmanager 2.0 installs with ``--no-deps`` but does not import without vn.py's
optional dependencies: its package ``__init__`` imports ``vnpy.trader.engine`` (tzlocal,
loguru, requests and more), and its rule modules can only be reached through that package.
So this is a minimal re-implementation of what its ``RiskEngine.check_allowed`` does for
every order, with its five shipped rules at their documented behaviour, on vn.py's own
``OrderRequest``/``OrderData``/``ContractData`` objects:

- the engine asks each active rule in turn and stops at the first refusal;
- OrderValidityRule: the contract exists (a lookup by ``vt_symbol``), the price is a multiple
  of the price tick (remainder test with a 1e-6 tolerance), the volume within the contract's
  minimum and maximum;
- OrderSizeRule: volume and value (price x volume x size, limit orders) limits;
- ActiveOrderRule: active orders below a limit, tracked from order updates;
- DailyLimitRule: per-contract and total order, cancel and trade counts below limits,
  counted from order updates (trade counting is left out: nothing fills in the bench);
- DuplicateOrderRule: the order formatted as a string and counted; refused at the limit.
  It publishes its counters on every check, as the original does (rule data as a dict,
  put on vn.py's EventEngine queue; the engine thread is not started, so the queue only
  grows, and is emptied between runs).

Refusals write a log through the same event queue. Nothing here checks cancels: vn.py
does not.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from vnpy.event import Event, EventEngine
from vnpy.trader.constant import Status
from vnpy.trader.object import ContractData, OrderData, OrderRequest

PEER = ("vnpy_riskmanager 2.0 RiskEngine.check_allowed with its five rules (OrderValidity, "
        "OrderSize, ActiveOrder, DailyLimit, DuplicateOrder), re-implemented: the package "
        "does not import without vn.py's optional dependencies")


class PeerRule:
    """What every rule has: a switch, the engine it reports to, and its counters' event."""

    name = ""
    parameters: tuple[str, ...] = ()
    variables: tuple[str, ...] = ()

    def __init__(self, engine: PeerRiskEngine, setting: dict[str, Any]) -> None:
        self.engine = engine
        self.active = True
        self.setup()
        for key, value in setting.items():
            if key in self.parameters:
                setattr(self, key, value)

    def setup(self) -> None:
        """The rule's defaults and state."""

    def check_allowed(self, req: OrderRequest, gateway_name: str) -> bool:
        return True

    def on_order(self, order: OrderData) -> None:
        """An order update."""

    def refuse(self, message: str) -> bool:
        self.engine.write_log(message)
        return False

    def publish(self) -> None:
        data = {"name": self.name, "class_name": type(self).__name__,
                "parameters": {key: getattr(self, key) for key in ("active", *self.parameters)},
                "variables": {key: getattr(self, key) for key in self.variables}}
        self.engine.event_engine.put(Event("eRiskRule", data))


class OrderValidity(PeerRule):
    name = "order validity"

    def check_allowed(self, req: OrderRequest, gateway_name: str) -> bool:
        contract = self.engine.contracts.get(req.vt_symbol)
        if contract is None:
            return self.refuse(f"contract {req.vt_symbol} does not exist: {req}")
        tick = contract.pricetick
        if tick > 0:
            remainder = req.price % tick
            if abs(remainder) > 1e-6 and abs(remainder - tick) > 1e-6:
                return self.refuse(f"price {req.price} is not a multiple of {tick}: {req}")
        if contract.max_volume and req.volume > contract.max_volume:
            return self.refuse(f"volume {req.volume} above {contract.max_volume}: {req}")
        if req.volume < contract.min_volume:
            return self.refuse(f"volume {req.volume} below {contract.min_volume}: {req}")
        return True


class OrderSize(PeerRule):
    name = "order size"
    parameters = ("order_volume_limit", "order_value_limit")

    def setup(self) -> None:
        self.order_volume_limit = 500
        self.order_value_limit = 1_000_000.0

    def check_allowed(self, req: OrderRequest, gateway_name: str) -> bool:
        if req.volume > self.order_volume_limit:
            return self.refuse(f"volume {req.volume} above {self.order_volume_limit}: {req}")
        contract = self.engine.contracts.get(req.vt_symbol)
        if contract and req.price:
            value = req.volume * req.price * contract.size
            if value > self.order_value_limit:
                return self.refuse(f"value {value} above {self.order_value_limit}: {req}")
        return True


class ActiveOrders(PeerRule):
    name = "active orders"
    parameters = ("active_order_limit",)
    variables = ("active_order_count",)

    def setup(self) -> None:
        self.active_order_limit = 50
        self.active_orders: dict[str, OrderData] = {}
        self.active_order_count = 0

    def check_allowed(self, req: OrderRequest, gateway_name: str) -> bool:
        if self.active_order_count >= self.active_order_limit:
            return self.refuse(f"{self.active_order_count} active orders: {req}")
        return True

    def on_order(self, order: OrderData) -> None:
        if order.is_active():
            self.active_orders[order.vt_orderid] = order
        else:
            self.active_orders.pop(order.vt_orderid, None)
        self.active_order_count = len(self.active_orders)
        self.publish()


class DailyLimits(PeerRule):
    name = "daily limits"
    parameters = ("total_order_limit", "total_cancel_limit", "total_trade_limit",
                  "contract_order_limit", "contract_cancel_limit", "contract_trade_limit")
    variables = ("total_order_count", "total_cancel_count", "total_trade_count",
                 "contract_order_count", "contract_cancel_count", "contract_trade_count")

    def setup(self) -> None:
        self.total_order_limit, self.total_cancel_limit = 20_000, 10_000
        self.total_trade_limit = 10_000
        self.contract_order_limit, self.contract_cancel_limit = 2_000, 1_000
        self.contract_trade_limit = 1_000
        self.order_ids: set[str] = set()
        self.cancel_ids: set[str] = set()
        self.total_order_count = self.total_cancel_count = self.total_trade_count = 0
        self.contract_order_count: defaultdict[str, int] = defaultdict(int)
        self.contract_cancel_count: defaultdict[str, int] = defaultdict(int)
        self.contract_trade_count: defaultdict[str, int] = defaultdict(int)

    def check_allowed(self, req: OrderRequest, gateway_name: str) -> bool:
        symbol = req.vt_symbol
        if self.contract_order_count[symbol] >= self.contract_order_limit:
            return self.refuse(f"contract orders reached {self.contract_order_limit}: {req}")
        if self.contract_cancel_count[symbol] >= self.contract_cancel_limit:
            return self.refuse(f"contract cancels reached {self.contract_cancel_limit}: {req}")
        if self.contract_trade_count[symbol] >= self.contract_trade_limit:
            return self.refuse(f"contract trades reached {self.contract_trade_limit}: {req}")
        if self.total_order_count >= self.total_order_limit:
            return self.refuse(f"orders reached {self.total_order_limit}: {req}")
        if self.total_cancel_count >= self.total_cancel_limit:
            return self.refuse(f"cancels reached {self.total_cancel_limit}: {req}")
        if self.total_trade_count >= self.total_trade_limit:
            return self.refuse(f"trades reached {self.total_trade_limit}: {req}")
        return True

    def on_order(self, order: OrderData) -> None:
        if order.vt_orderid not in self.order_ids:
            self.order_ids.add(order.vt_orderid)
            self.total_order_count += 1
            self.contract_order_count[order.vt_symbol] += 1
            self.publish()
        elif order.status == Status.CANCELLED and order.vt_orderid not in self.cancel_ids:
            self.cancel_ids.add(order.vt_orderid)
            self.total_cancel_count += 1
            self.contract_cancel_count[order.vt_symbol] += 1
            self.publish()


class DuplicateOrders(PeerRule):
    name = "duplicate orders"
    parameters = ("duplicate_order_limit",)
    variables = ("duplicate_order_count",)

    def setup(self) -> None:
        self.duplicate_order_limit = 10
        self.duplicate_order_count: defaultdict[str, int] = defaultdict(int)

    def check_allowed(self, req: OrderRequest, gateway_name: str) -> bool:
        key = (f"{req.vt_symbol}|{req.type.value}|{req.direction.value}|{req.offset.value}|"
               f"{req.volume}@{req.price}")
        self.duplicate_order_count[key] += 1
        self.publish()
        count = self.duplicate_order_count[key]
        if count >= self.duplicate_order_limit:
            return self.refuse(f"{count} duplicate orders: {req}")
        return True


RULES = (OrderValidity, OrderSize, ActiveOrders, DailyLimits, DuplicateOrders)


class PeerRiskEngine:
    """The engine: rules asked in turn, order and trade updates dispatched to them."""

    def __init__(self, contracts: Iterable[ContractData], settings: dict[str, dict[str, Any]]) -> None:
        self.event_engine = EventEngine()
        self.contracts = {contract.vt_symbol: contract for contract in contracts}
        self.rules = [rule(self, settings.get(rule.__name__, {})) for rule in RULES]
        self.refusals = 0

    def check_allowed(self, req: OrderRequest, gateway_name: str) -> bool:
        for rule in self.rules:  # noqa: SIM110 - the original's loop, timed as it is
            if rule.active and not rule.check_allowed(req, gateway_name):
                return False
        return True

    def on_order(self, order: OrderData) -> None:
        for rule in self.rules:
            rule.on_order(order)

    def write_log(self, message: str) -> None:
        self.refusals += 1
        self.event_engine.put(Event("eLog", "order refused: " + message))
        self.event_engine.put(Event("eRiskNotify", message))

    def drain(self) -> None:
        """Empty the unstarted engine's queue (between runs, untimed)."""
        queue = self.event_engine._queue
        while not queue.empty():
            queue.get_nowait()

"""An emulated CTP trader counter at the API boundary, backed by the simulated exchange.

:class:`EmulatedCounter` is the counter: it outlives the gateway's API handles (a restarted
gateway logs in to the same counter, which remembers the day's orders and trades), numbers
sessions, keeps MaxOrderRef per session, and matches orders on a
:class:`~hft.daemons.trade.simexchange.SimExchange`. ``counter.factory`` is an
``api_factory``: each call hands out a new :class:`TraderApi`, an emulated
CThostFtdcTraderApi (the md emulator's trader front plus the order calls) that answers
through the real SPI with real openctp-ctp structs on its own thread:

- ``ReqUserLogin`` -> MaxOrderRef, FrontID 1 and a new SessionID;
- ``ReqSettlementInfoConfirm``; ``ReqQryOrder`` / ``ReqQryTrade`` / ``ReqQryInvestorPosition`` /
  ``ReqQryTradingAccount`` answered from the counter (returns -3 when two queries come closer
  than ``query_interval_s``: CTP's flow limit, counted in ``flow_violations``);
- ``ReqOrderInsert`` -> a duplicate or stale OrderRef is refused with 22; a counter refusal
  (funds, position, price) comes as OnRspOrderInsert + OnErrRtnOrderInsert; accepted orders
  get OnRtnOrder, fills OnRtnTrade;
- ``ReqOrderAction`` -> the cancel, or OnRspOrderAction + OnErrRtnOrderAction when refused;
- at each login, unless the private topic was subscribed QUICK (or ``resume`` is off), every
  OnRtnOrder / OnRtnTrade of the day again, as a front does for THOST_TERT_RESTART (a superset
  of RESUME's replay): the source of repeats after a reconnect.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

import numpy as np
from openctp_ctp import tdapi

from hft.daemons.runtime.events import EventType, OrderStatus, PriceType, empty
from hft.daemons.trade.ctperrors import PROMPTS, CtpError
from hft.daemons.trade.ctptrader import CtpTrader
from hft.daemons.trade.simexchange import FLAG_CANCEL_REFUSED, SimExchange, SimExchangeConfig
from support.ctp_emulator import CtpTraderEmulator, set_gb18030

_STATUS_CHAR = {OrderStatus.SUBMITTING: "a", OrderStatus.NOT_TRADED: "3",
                OrderStatus.PART_TRADED: "1", OrderStatus.ALL_TRADED: "0",
                OrderStatus.CANCELLED: "5", OrderStatus.REJECTED: "5"}
_OFFSET = {"0": 0, "1": 1, "3": 2, "4": 3}
_OFFSET_CHAR = {0: "0", 1: "1", 2: "3", 3: "4"}


class EmulatedCounter:
    """The counter behind every API handle (module docstring)."""

    def __init__(self, *, broker_id: str, user_id: str, password: str, app_id: str = "",
                 auth_code: str = "", trading_day: str = "20260105", funds: float = 1e7,
                 query_interval_s: float = 0.0, resume: bool = True) -> None:
        self.credentials = dict(broker_id=broker_id, user_id=user_id, password=password,
                                app_id=app_id, auth_code=auth_code, trading_day=trading_day)
        self.query_interval_s = query_interval_s
        self.resume = resume
        self.lock = threading.RLock()
        self.exchange = SimExchange(SimExchangeConfig(accounts={user_id: funds}), self._on_return)
        self.apis: list[TraderApi] = []
        self.sessions = 0
        self.orders: dict[int, dict[str, Any]] = {}
        """OrderRef -> the CThostFtdcOrderField values (refs are unique per investor here)."""
        self.trades: list[dict[str, Any]] = []
        self.flow: list[tuple[str, dict[str, Any]]] = []
        """The day's private flow: ("order" | "trade", values), in order."""
        self.inserts = 0
        self.flow_violations = 0
        self.drop_inserts = False
        """Accept ReqOrderInsert and never deliver it (lost on the wire)."""
        self.refusals = 0
        """Refuse this many of the next logins with ErrorID 7 (not ready)."""
        self.max_order_ref_elsewhere = 0
        """The highest OrderRef another terminal of the user sent today: every login's
        MaxOrderRef is at least this, as a counter's is."""
        self._pending: dict[int, tuple[TraderApi, Any]] = {}

    def factory(self, flow_path: str = "", *_: object) -> TraderApi:
        api = TraderApi(self)
        api.factory(flow_path)
        api.refuse_logins(self.refusals)
        with self.lock:
            self.apis.append(api)
        return api

    @property
    def api(self) -> TraderApi:
        """The latest API handle (the running gateway's)."""
        return self.apis[-1]

    def tick(self, record: Any) -> None:
        """A MARKET_DATA record for the exchange: resting orders may fill."""
        with self.lock:
            self.exchange.on_tick(record)

    # --- the exchange's returns -> CTP callbacks ---------------------------------------------

    def _on_return(self, record: Any) -> None:
        ref = int(record["order_ref"])
        if int(record["type"]) == EventType.RTN_TRADE:
            order = self.orders[ref]
            values = {"ExchangeID": order["ExchangeID"],
                      "TradeID": bytes(record["trade_id"]).decode(),
                      "Direction": order["Direction"], "OrderRef": order["OrderRef"],
                      "OrderSysID": order["OrderSysID"], "InstrumentID": order["InstrumentID"],
                      "Price": float(record["price"]), "Volume": int(record["volume"]),
                      "OffsetFlag": order["CombOffsetFlag"], "InvestorID": order["InvestorID"],
                      "BrokerID": order["BrokerID"],
                      "TradingDay": self.credentials["trading_day"]}
            self.trades.append(values)
            self._private("trade", values)
            return
        status, error = int(record["status"]), int(record["error_id"])
        if int(record["flags"]) & FLAG_CANCEL_REFUSED:
            self._answer_refused_cancel(ref, error)
            return
        if status == OrderStatus.REJECTED:
            api, field = self._pending.pop(ref)
            api.send_insert_refusal(field, error)
            self.orders.pop(ref, None)
            return
        order = self.orders[ref]
        order["OrderStatus"] = _STATUS_CHAR[OrderStatus(status)]
        order["OrderSubmitStatus"] = "3"  # accepted
        order["VolumeTraded"] = int(record["volume_traded"])
        order["OrderSysID"] = bytes(record["order_sys_id"]).decode()
        order["StatusMsg"] = bytes(record["message"]).decode()
        self._private("order", dict(order))

    def _private(self, kind: str, values: dict[str, Any]) -> None:
        self.flow.append((kind, values))
        for api in self.apis:
            api.deliver(kind, values)

    def _answer_refused_cancel(self, ref: int, error: int) -> None:
        api, field = self._pending.pop(-ref, (self.api, None))
        api.send_cancel_refusal(field, error)

    # --- what the API handles ask --------------------------------------------------------------

    def insert(self, api: TraderApi, field: Any) -> int:
        with self.lock:
            ref = int(field.OrderRef) if field.OrderRef.strip().isdigit() else 0
            self.inserts += 1
            if self.drop_inserts:
                return 0
            if ref in self.orders or ref <= api.max_order_ref:
                api.send_insert_refusal(field, CtpError.DUPLICATE_ORDER_REF)
                return 0
            order = {"FrontID": 1, "SessionID": api.session, "OrderRef": field.OrderRef,
                     "ExchangeID": field.ExchangeID, "OrderSysID": "",
                     "InstrumentID": field.InstrumentID, "OrderStatus": "a",
                     "OrderSubmitStatus": "0", "VolumeTraded": 0,
                     "VolumeTotalOriginal": field.VolumeTotalOriginal, "StatusMsg": "",
                     "InvestorID": field.InvestorID, "BrokerID": field.BrokerID,
                     "TradingDay": self.credentials["trading_day"],
                     "LimitPrice": field.LimitPrice, "Direction": field.Direction,
                     "CombOffsetFlag": field.CombOffsetFlag}
            self.orders[ref] = order
            self._pending[ref] = (api, _copy(tdapi.CThostFtdcInputOrderField, field,
                                             ("OrderRef", "InstrumentID", "InvestorID",
                                              "BrokerID")))
            send = empty(EventType.ORDER_SEND)[0]
            send["instrument"], send["exchange"] = field.InstrumentID, field.ExchangeID
            send["order_ref"], send["account"] = ref, field.InvestorID
            send["price"], send["volume"] = field.LimitPrice, field.VolumeTotalOriginal
            send["direction"] = 0 if field.Direction == "0" else 1
            send["offset"] = _OFFSET[field.CombOffsetFlag]
            send["price_type"] = (PriceType.FOK if field.VolumeCondition == "3" else
                                  PriceType.FAK if field.TimeCondition == "1" else PriceType.LIMIT)
            send["trading_day"] = int(self.credentials["trading_day"])
            self.exchange.submit(send)
            self._pending.pop(ref, None)
            return 0

    def cancel(self, api: TraderApi, field: Any) -> int:
        with self.lock:
            ref = int(field.OrderRef) if field.OrderRef.strip().isdigit() else 0
            copy = _copy(tdapi.CThostFtdcInputOrderActionField, field,
                         ("FrontID", "SessionID", "OrderRef", "OrderSysID", "InvestorID"))
            self._pending[-ref] = (api, copy)
            request = empty(EventType.CANCEL_REQ)[0]
            request["order_ref"], request["account"] = ref, field.InvestorID
            self.exchange.cancel(request)
            self._pending.pop(-ref, None)
            return 0

    def positions(self, investor: str) -> list[dict[str, Any]]:
        """InvestorPosition rows: SHFE/INE one per PositionDate, others one per side."""
        with self.lock:
            state = self.exchange.accounts.snapshot().get(investor, {"sides": []})
        rows = []
        for key, direction, today, yesterday, *_ in state["sides"]:
            instrument = key.rstrip("\0")
            exchange = self._exchange_of(instrument)
            side = "2" if direction == 0 else "3"
            base = {"InvestorID": investor, "InstrumentID": instrument, "ExchangeID": exchange,
                    "PosiDirection": side}
            if exchange in ("SHFE", "INE"):
                for lots, date, todays in ((today, "1", today), (yesterday, "2", 0)):
                    if lots:
                        rows.append(base | {"Position": lots, "TodayPosition": todays,
                                            "PositionDate": date})
            elif today + yesterday:
                rows.append(base | {"Position": today + yesterday, "TodayPosition": today,
                                    "PositionDate": "1"})
        return rows

    def _exchange_of(self, instrument: str) -> str:
        for order in self.orders.values():
            if order["InstrumentID"] == instrument:
                return str(order["ExchangeID"])
        return ""


class TraderApi(CtpTraderEmulator):
    """One emulated CThostFtdcTraderApi handle on an :class:`EmulatedCounter`."""

    def __init__(self, counter: EmulatedCounter) -> None:
        c = counter.credentials
        super().__init__([], broker_id=c["broker_id"], user_id=c["user_id"],
                         password=c["password"], app_id=c["app_id"], auth_code=c["auth_code"],
                         trading_day=c["trading_day"])
        self.counter = counter
        self.session = 0
        self.max_order_ref = 0
        self._last_query = -1e9

    # --- login with MaxOrderRef and a session ------------------------------------------------

    def _answer_login(self, request_id: int, refusal: tuple[int, str] | None) -> None:
        with self.counter.lock:
            if refusal is None:
                self.counter.sessions += 1
                self.session = self.counter.sessions
                self.max_order_ref = max((int(o["OrderRef"]) for o in self.counter.orders.values()
                                          if o["SessionID"] == self.session),
                                         default=self.counter.max_order_ref_elsewhere)
        login = tdapi.CThostFtdcRspUserLoginField()
        if refusal is None:
            login.TradingDay, login.BrokerID, login.UserID = (self.trading_day, self.broker_id,
                                                              self.user_id)
            login.FrontID, login.SessionID = 1, self.session
            login.MaxOrderRef = str(self.max_order_ref)
        with self._cond:
            self._logged_in = refusal is None
            spi = self._spi
        if spi is None:
            return
        spi.OnRspUserLogin(login, self._rsp_info(*(refusal or (0, "CTP:正确"))), request_id, True)
        if (refusal is None and self.counter.resume
                and self.topics.get("private") != tdapi.THOST_TERT_QUICK):
            for kind, values in list(self.counter.flow):
                self._callback(kind, values)

    # --- requests ----------------------------------------------------------------------------

    def ReqSettlementInfoConfirm(self, field: Any, request_id: int) -> int:
        return self._answer(lambda spi: spi.OnRspSettlementInfoConfirm(
            tdapi.CThostFtdcSettlementInfoConfirmField(), self._rsp_info(0, "CTP:正确"),
            request_id, True))

    def ReqQryInstrument(self, field: Any, request_id: int) -> int:
        if not self._query_allowed():
            return -3
        return self._answer(lambda spi: spi.OnRspQryInstrument(None, None, request_id, True))

    def ReqQryOrder(self, field: Any, request_id: int) -> int:
        return self._query(request_id, "OnRspQryOrder", tdapi.CThostFtdcOrderField,
                           lambda: list(self.counter.orders.values()))

    def ReqQryTrade(self, field: Any, request_id: int) -> int:
        return self._query(request_id, "OnRspQryTrade", tdapi.CThostFtdcTradeField,
                           lambda: list(self.counter.trades))

    def ReqQryInvestorPosition(self, field: Any, request_id: int) -> int:
        investor = field.InvestorID
        return self._query(request_id, "OnRspQryInvestorPosition",
                           tdapi.CThostFtdcInvestorPositionField,
                           lambda: self.counter.positions(investor))

    def ReqQryTradingAccount(self, field: Any, request_id: int) -> int:
        def account() -> list[dict[str, Any]]:
            funds = self.counter.exchange.accounts
            return [{"AccountID": self.user_id, "Available": funds.available(self.user_id),
                     "CurrMargin": funds.margin(self.user_id)}]
        return self._query(request_id, "OnRspQryTradingAccount",
                           tdapi.CThostFtdcTradingAccountField, account)

    def ReqOrderInsert(self, field: Any, request_id: int) -> int:
        if not self._live():
            return -1
        return self.counter.insert(self, field)

    def ReqOrderAction(self, field: Any, request_id: int) -> int:
        if not self._live():
            return -1
        return self.counter.cancel(self, field)

    def instrument_status(self, instrument: str, exchange: str, status: str) -> None:
        """OnRtnInstrumentStatus (status: THOST_FTDC_IS_*, e.g. '2' trading, '6' closed)."""
        values = {"InstrumentID": instrument, "ExchangeID": exchange, "InstrumentStatus": status}
        self._answer(lambda spi: spi.OnRtnInstrumentStatus(
            _struct(tdapi.CThostFtdcInstrumentStatusField, values)))

    # --- answers (scheduled on this API's thread, dropped with the connection) ----------------

    def deliver(self, kind: str, values: dict[str, Any]) -> None:
        if self._live():
            self._schedule(partial(self._callback, kind, values), epoch=self._epoch)

    def send_insert_refusal(self, field: Any, error: int) -> None:
        info = (int(error), PROMPTS[CtpError(error)])
        self._schedule(partial(self._refusal, "OnRspOrderInsert", "OnErrRtnOrderInsert", field,
                               info), epoch=self._epoch)

    def send_cancel_refusal(self, field: Any, error: int) -> None:
        info = (int(error), PROMPTS[CtpError(error)])
        self._schedule(partial(self._refusal, "OnRspOrderAction", "OnErrRtnOrderAction", field,
                               info), epoch=self._epoch)

    def _refusal(self, response: str, err_return: str, field: Any, info: tuple[int, str]) -> None:
        spi = self._spi
        if spi is None:
            return
        getattr(spi, response)(field, self._rsp_info(*info), 0, True)
        if err_return == "OnErrRtnOrderAction":
            action = _copy(tdapi.CThostFtdcOrderActionField, field,
                           ("FrontID", "SessionID", "OrderRef", "OrderSysID", "InvestorID"))
            spi.OnErrRtnOrderAction(action, self._rsp_info(*info))
        else:
            spi.OnErrRtnOrderInsert(field, self._rsp_info(*info))

    def _callback(self, kind: str, values: dict[str, Any]) -> None:
        spi = self._spi
        if spi is None or not self._logged_in:
            return
        if kind == "order":
            spi.OnRtnOrder(_struct(tdapi.CThostFtdcOrderField, values))
        else:
            spi.OnRtnTrade(_struct(tdapi.CThostFtdcTradeField, values))

    def _query(self, request_id: int, callback: str, struct_type: Any,
               rows: Any) -> int:
        if not self._query_allowed():
            return -3

        def answer(spi: Any) -> None:
            with self.counter.lock:
                found = rows()
            if not found:
                getattr(spi, callback)(None, None, request_id, True)
            for n, values in enumerate(found):
                getattr(spi, callback)(_struct(struct_type, values), None, request_id,
                                       n == len(found) - 1)
        return self._answer(answer)

    def _query_allowed(self) -> bool:
        import time
        now = time.monotonic()
        if now - self._last_query < self.counter.query_interval_s * 0.9:
            self.counter.flow_violations += 1
            return False
        self._last_query = now
        return True

    def _answer(self, action: Any) -> int:
        if not self._live():
            return -1

        def run() -> None:
            spi = self._spi
            if spi is not None:
                action(spi)
        self._schedule(run, epoch=self._epoch)
        return 0

    def _live(self) -> bool:
        with self._cond:
            return self._connected and not self._released


def _struct(struct_type: Any, values: dict[str, Any]) -> Any:
    """A struct with ``values``; the status text GB18030-encoded, as a front sends it."""
    out = struct_type()
    for name, value in values.items():
        if name == "StatusMsg" and value:
            set_gb18030(out, name, value)
        else:
            setattr(out, name, value)
    return out


def _copy(struct_type: Any, field: Any, names: tuple[str, ...]) -> Any:
    """A struct with ``names`` copied from ``field`` (the caller may reuse its struct)."""
    return _struct(struct_type, {name: getattr(field, name) for name in names})


def tick(instrument: str, exchange: str, *, last: float, bid: float, ask: float,
         trading_day: int = 20260105, ts_ns: int = 1, volume: int = 100) -> np.void:
    """A MARKET_DATA record with one level each side (enough to cross and to rest)."""
    record = empty(EventType.MARKET_DATA)[0]
    record["ts_ns"], record["trading_day"] = ts_ns, trading_day
    record["instrument"], record["exchange"] = instrument, exchange
    record["last_price"], record["volume"] = last, volume
    record["turnover"] = last * volume * 10
    record["bid_price"][0], record["ask_price"][0] = bid, ask
    record["bid_volume"][0], record["ask_volume"][0] = 10, 10
    record["upper_limit_price"], record["lower_limit_price"] = last * 1.1, last * 0.9
    return record


COUNTER: EmulatedCounter | None = None
"""The counter :class:`EmulatedCtpTrader` connects to (set by the test or the plugin file)."""


def _counter_api(flow_path: str) -> TraderApi:
    assert COUNTER is not None, "set ctp_td_emulator.COUNTER first"
    return COUNTER.factory(flow_path)


class EmulatedCtpTrader(CtpTrader):
    """The production gateway with the emulated counter's API factory: a test-only plugin,
    so no production config can point ``ctp_trader`` at an emulator."""

    api_factory = staticmethod(_counter_api)

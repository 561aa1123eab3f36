"""The CTP trader gateway (``ctp_trader``): the risk daemon's orders on a real CTP counter.

On the risk daemon's bus it takes what the order desk lets through (ORDER_SEND, CANCEL_REQ)
and publishes RTN_ORDER, RTN_TRADE and ALERT, which the desk journals as they come.

Flow: ``Init`` -> ``OnFrontConnected`` -> ``ReqAuthenticate`` (with an app id) ->
``ReqUserLogin`` -> ``ReqSettlementInfoConfirm`` -> queries, one at a time and at most one
per ``query_interval_s`` (CTP's flow limit: one a second): instruments, orders, trades,
positions, the trading account -> ready. Orders are refused (REJECTED, ``not ready``) while
not ready: nothing is held back to leave late. A disconnect makes the API reconnect by
itself; every connection logs in and queries again, and the order and trade queries bring
back what happened while down (repeats are dropped: orders by their last published state,
trades by ExchangeID + TradeID + Direction). A refused login (credentials, authentication)
is not retried: brokers lock accounts after wrong passwords.

Threads: CTP callbacks are copied into plain values on the API's thread and queued
(``ctpspi``), each waking the daemon's loop (``ctx.wake``: it may sleep on its journals); a
poller on the main thread drains the queue, so the bus and the journal stay main-thread
only. Requests are made from the main thread.

Ids: orders are keyed by FrontID + SessionID + OrderRef; OrderRefs come from ``ctporders``
(above MaxOrderRef and never reused, across restarts). At start the gateway reads the risk
journal (read only): the trades already published (so a restart does not publish them again)
and the last POS_UPDATE of each side (the desk's book as published).

Restart: the desk republishes an ORDER_SEND that never got a return, flagged RECOVERED. Once
the counter's orders are queried, the gateway answers it with what the counter knows of it,
or, if it never reached the counter, with RTN_ORDER status LOST and an ALERT ``order_lost``.

SHFE/INE: an engine CLOSE takes yesterday's free lots first, as a close-yesterday order, and
the rest as a close-today order (lots from the position query, moved by every fill and
frozen by working closes): one engine order, one or two CTP orders (``_legs``).

Positions: after each position query (at login and every ``reconcile_interval_s``) the
counter's (position, today_position) per account, instrument and direction are compared
with the last POS_UPDATE the desk published for that side; any difference is an ALERT
``position_mismatch`` (skipped when a fill arrived while the query ran).

Credentials: the config, else the environment (``CTP_TD_FRONT``, ``CTP_BROKER_ID``,
``CTP_USER_ID``, ``CTP_PASSWORD``, ``CTP_APP_ID``, ``CTP_AUTH_CODE``), else a JSON file
(``credentials_file``, which must be mode 0600). The password and auth code are held only as
:class:`Secret` (the log filter masks them) and in the request structs,
never in logs, metrics, reprs or errors.
"""

from __future__ import annotations

import math
import os
import queue
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from openctp_ctp import tdapi
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import BaseModel, ConfigDict, Field

from hft.daemons.md.ctp import CREDENTIAL_ERRORS, request_field
from hft.daemons.refdata.instruments import SPLIT_CLOSE_EXCHANGES
from hft.daemons.runtime.alerts import AlertPublisher
from hft.daemons.runtime.credentials import with_credentials
from hft.daemons.runtime.events import (
    DTYPES,
    FINAL_STATUSES,
    AlertLevel,
    Direction,
    EventType,
    Offset,
    OrderFlag,
    OrderStatus,
    PosDirection,
    PriceType,
    empty,
    fields_struct,
)
from hft.daemons.runtime.journal import JournalNotFound, JournalReader
from hft.daemons.runtime.plugins import Plugin, PluginContext
from hft.daemons.runtime.secrets import Secret
from hft.daemons.runtime.waitmode import WaitMode
from hft.daemons.trade.ctperrors import PROMPTS, CtpError
from hft.daemons.trade.ctporders import CtpKey, CtpOrder, EngineKey, Leg, OrderRefFile
from hft.daemons.trade.ctpspi import CALLBACK_KINDS, Callback, TraderSpi
from hft.daemons.trade.poscheck import PositionCheck
from hft.daemons.trade.simexchange import FLAG_CANCEL_REFUSED

ENVIRONMENT = {"fronts": "CTP_TD_FRONT", "broker_id": "CTP_BROKER_ID", "user_id": "CTP_USER_ID",
               "password": "CTP_PASSWORD", "app_id": "CTP_APP_ID", "auth_code": "CTP_AUTH_CODE"}
_SPLIT_CLOSE = frozenset(exchange.encode() for exchange in SPLIT_CLOSE_EXCHANGES)
NOT_READY = -1
"""error_id of an order refused because the gateway is not logged in and reconciled."""
_STATUS = {"0": OrderStatus.ALL_TRADED, "1": OrderStatus.PART_TRADED,
           "2": OrderStatus.PART_TRADED, "3": OrderStatus.NOT_TRADED,
           "4": OrderStatus.NOT_TRADED, "5": OrderStatus.CANCELLED, "a": OrderStatus.SUBMITTING,
           "b": OrderStatus.NOT_TRADED, "c": OrderStatus.NOT_TRADED}
"""CTP OrderStatus -> ours."""
_INSERT_REJECTED = str(tdapi.THOST_FTDC_OSS_InsertRejected)
_OFFSET_FLAG = {Offset.OPEN: "0", Offset.CLOSE: "1", Offset.CLOSE_TODAY: "3",
                Offset.CLOSE_YESTERDAY: "4"}
_OFFSET_OF_FLAG = {"0": Offset.OPEN, "1": Offset.CLOSE, "2": Offset.CLOSE, "3": Offset.CLOSE_TODAY,
                   "4": Offset.CLOSE_YESTERDAY, "5": Offset.CLOSE, "6": Offset.CLOSE}
_POS_DIRECTION = {"2": PosDirection.LONG, "3": PosDirection.SHORT}
_RECOVERED = int(OrderFlag.RECOVERED)  # int & IntFlag would run enum's Python __and__
_ORDER = fields_struct(DTYPES[EventType.ORDER_SEND],
                       ("flags", "trading_day", "instrument_index", "source", "instrument",
                        "exchange", "order_ref", "price", "volume", "direction", "offset",
                        "price_type", "account")).unpack_from


class CtpTraderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fronts: list[str] = []
    broker_id: str = ""
    user_id: str = ""
    password: Secret = Secret("")
    app_id: str = ""
    auth_code: Secret = Secret("")
    investor_id: str = ""
    """The account orders trade for (the ORDER_SEND ``account``); default the user id."""
    credentials_file: Path | None = None
    """JSON with any of the keys above, mode 0600 (checked)."""
    journal: str = Field(default="risk", min_length=1)
    """The risk journal, read at start for the trades and positions already published."""
    query_interval_s: float = Field(default=1.0, gt=0, le=60)
    """Least time between two queries (CTP allows one a second)."""
    reconcile_interval_s: float = Field(default=60.0, gt=0)
    """How often the counter's positions are queried and compared with the desk's."""
    login_retry_s: float = Field(default=1.0, gt=0)
    """First delay before a login refused for a reason other than the credentials is retried
    (doubling up to a minute)."""
    durable: bool = False
    """Write each order's OrderRef mapping to the disk before the order leaves (fdatasync,
    a wait for the disk per order), so it survives a power loss; set it with the order
    desk's ``durable`` on a live account."""


class CtpTrader(Plugin):
    """Risk daemon plugin: the order desk's orders on a CTP counter (module docstring)."""

    Config = CtpTraderConfig
    api_factory: ClassVar[Callable[[str], Any]] = tdapi.CThostFtdcTraderApi.CreateFtdcTraderApi
    """Makes the API from the flow directory; tests subclass the plugin to hand out an
    emulator (a plugin file), so no config can point a production gateway at one."""

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        settings = _with_credentials(ctx.config)
        self.settings = settings
        self.investor = (settings.investor_id or settings.user_id).encode()
        self.state = "disconnected"
        self.stats = {"logins": 0, "login_failures": 0, "disconnects": 0, "orders_sent": 0,
                      "orders_refused": 0, "trades": 0, "duplicate_trades": 0, "lost": 0,
                      "position_mismatches": 0, "queries": 0}
        self._inbox: queue.SimpleQueue[Callback] = queue.SimpleQueue()
        self._api: Any = None
        self._request_id = 0
        self._front = self._session = self._max_order_ref = self.trading_day = 0
        self._credentials_refused = False
        self._retry_at = 0.0
        self._retries = 0
        self._queries: deque[tuple[str, Callable[[], int]]] = deque()
        self._query_busy = ""
        self._next_query_at = 0.0
        self._next_reconcile_at = math.inf
        self._rows: list[tuple[Any, ...]] = []
        self._fill_during_query = False
        self.orders: dict[EngineKey, CtpOrder] = {}
        self._by_ctp: dict[CtpKey, tuple[CtpOrder, Leg]] = {}
        self._by_ref: dict[int, tuple[CtpOrder, Leg]] = {}
        self.exchanges: dict[bytes, bytes] = {}
        self.instrument_status: dict[bytes, str] = {}
        self._trades_seen: set[tuple[int, bytes, bytes, int]] = set()
        """(trading day, ExchangeID, TradeID, direction): exchanges reuse TradeIDs each day."""
        self._closable: dict[tuple[bytes, int], list[int]] = {}
        """(instrument, held side) -> [today, yesterday] lots, for SHFE/INE offsets."""
        self.account: dict[str, float] = {}
        self._recovered: list[Any] = []
        self._order_out = empty(EventType.RTN_ORDER)[0]
        self._trade_out = empty(EventType.RTN_TRADE)[0]
        self._alerts = AlertPublisher(ctx.bus, ctx.name)
        self.position_check = PositionCheck(self._alerts)
        """The desk's published positions, checked against the counter's after each query."""
        self._login_request = request_field(
            tdapi.CThostFtdcReqUserLoginField, BrokerID=settings.broker_id,
            UserID=settings.user_id, Password=settings.password.get_secret_value())
        self._auth_request = request_field(
            tdapi.CThostFtdcReqAuthenticateField, BrokerID=settings.broker_id,
            UserID=settings.user_id, AppID=settings.app_id,
            AuthCode=settings.auth_code.get_secret_value())
        self._insert_field = self._order_template()
        self._handlers: dict[str, Callable[[Any, Any, bool], None]] = {
            kind: getattr(self, f"_on_{kind}") for kind in CALLBACK_KINDS}
        self.refs = OrderRefFile(Path(ctx.host.run_dir) / f"{ctx.name}.orders",
                                 durable=settings.durable)
        ctx.subscribe(EventType.ORDER_SEND, self.on_order)
        ctx.subscribe(EventType.CANCEL_REQ, self.on_cancel)
        ctx.subscribe(EventType.POS_UPDATE, self.position_check.on_published)

    def __repr__(self) -> str:
        return (f"CtpTrader(fronts={self.settings.fronts}, broker_id={self.settings.broker_id!r},"
                f" user_id={self.settings.user_id!r}, state={self.state})")

    def start(self) -> None:
        self._read_journal()
        flow = Path(self.ctx.host.run_dir) / "ctp" / self.ctx.name
        flow.mkdir(mode=0o700, parents=True, exist_ok=True)
        api = type(self).api_factory(f"{flow}{os.sep}")
        self._spi = TraderSpi(self._inbox, self.ctx.wake)
        api.RegisterSpi(self._spi)
        for front in self.settings.fronts:
            api.RegisterFront(front)
        # the private flow since the last return received (the API keeps its place in the
        # flow directory); what it repeats, and what the queries repeat, is dropped
        api.SubscribePrivateTopic(tdapi.THOST_TERT_RESUME)
        api.SubscribePublicTopic(tdapi.THOST_TERT_QUICK)
        self._api = api
        self.state = "connecting"
        self.ctx.add_poller(self.poll)
        self.ctx.log.info("CTP trader connecting", extra={"fronts": self.settings.fronts,
                                                          "user_id": self.settings.user_id})
        api.Init()

    def stop(self) -> None:
        api, self._api = self._api, None
        if api is not None:
            api.RegisterSpi(None)
            api.Release()
        self.refs.close()
        self._login_request = self._auth_request = self._insert_field = None  # before SWIG's
        # type table goes at exit; the login structs hold the secrets' last copies
        self.state = "disconnected"

    # --- the main loop ---------------------------------------------------------------------

    def poll(self) -> int:
        """Drain the callbacks; send the next query when its turn and the flow limit allow."""
        count = 0
        while True:
            try:
                kind, values, error, last = self._inbox.get_nowait()
            except queue.Empty:
                break
            self._handlers[kind](values, error, last)
            count += 1
        now = time.monotonic()
        if self.state == "querying" and not self._queries and not self._query_busy:
            self.state = "ready"
            self.ctx.log.info("CTP trader ready", extra={"working": sum(
                o.working for o in self.orders.values())})
        if self._retry_at and now >= self._retry_at:
            self._retry_at = 0.0
            self._login()
        if self.state == "ready" and now >= self._next_reconcile_at:
            self._next_reconcile_at = math.inf
            self._queue_queries(("positions",))
        if self._queries and not self._query_busy and now >= self._next_query_at:
            name, send = self._queries[0]
            result = send()
            self._next_query_at = now + self.settings.query_interval_s
            if result == 0:
                self._queries.popleft()
                self._query_busy = name
                self.stats["queries"] += 1
                self._rows = []
                self._fill_during_query = False
        return count

    def _request(self) -> int:
        self._request_id += 1
        return self._request_id

    # --- connection and login --------------------------------------------------------------

    def _on_connected(self, values: Any, error: Any, last: bool) -> None:
        if self._credentials_refused:
            self.state = "error"
            self.ctx.log.error("CTP trader front connected; not logging in: the credentials "
                               "were refused")
            return
        self.ctx.log.info("CTP trader front connected")
        if self.settings.app_id:
            self.state = "authenticating"
            self._api.ReqAuthenticate(self._auth_request, self._request())
        else:
            self._login()

    def _on_authenticated(self, values: Any, error: tuple[int, str] | None, last: bool) -> None:
        if error is not None:
            self._refused("authentication", error, retry=False)
            return
        self._login()

    def _login(self) -> None:
        self.state = "logging_in"
        if self._api.ReqUserLogin(self._login_request, self._request()) != 0:
            self._refused("login", (-1, "request not sent"), retry=True)

    def _on_login(self, values: Any, error: tuple[int, str] | None, last: bool) -> None:
        if error is not None:
            self._refused("login", error, retry=error[0] not in CREDENTIAL_ERRORS)
            return
        day, self._front, self._session, max_ref = values
        self._max_order_ref = int(max_ref) if str(max_ref).strip().isdigit() else 0
        self.trading_day = int(day) if str(day).isdigit() else 0
        self.stats["logins"] += 1
        self._retries = 0
        self.state = "confirming"
        self.ctx.log.info("CTP trader logged in", extra={
            "trading_day": self.trading_day, "front_id": self._front,
            "session_id": self._session, "max_order_ref": self._max_order_ref})
        confirm = request_field(tdapi.CThostFtdcSettlementInfoConfirmField,
                                BrokerID=self.settings.broker_id,
                                InvestorID=self.investor.decode())
        self._api.ReqSettlementInfoConfirm(confirm, self._request())

    def _on_settlement_confirmed(self, values: Any, error: tuple[int, str] | None,
                                 last: bool) -> None:
        if error is not None:
            self.ctx.log.error("CTP settlement confirmation refused",
                               extra={"error_id": error[0], "error_msg": error[1]})
        self.state = "querying"
        self._queue_queries(("instruments", "orders", "trades", "positions", "account"))

    def _refused(self, step: str, error: tuple[int, str], *, retry: bool) -> None:
        self.stats["login_failures"] += 1
        self.state = "error"
        extra: dict[str, Any] = {"user_id": self.settings.user_id,
                                 "broker_id": self.settings.broker_id, "error_id": error[0],
                                 "error_msg": error[1]}
        if not retry:
            self._credentials_refused = True
            self.ctx.log.error(f"CTP trader {step} refused: check the credentials; not "
                               "retrying until restarted", extra=extra)
            self._alerts.publish(AlertLevel.CRITICAL, b"login_refused",
                        f"{step} refused: ErrorID {error[0]} {error[1]}")
            return
        delay = min(self.settings.login_retry_s * 2.0 ** self._retries, 60.0)
        self._retries += 1
        self._retry_at = time.monotonic() + delay
        extra["retry_in_s"] = delay
        self.ctx.log.error(f"CTP trader {step} failed; retrying", extra=extra)

    def _on_disconnected(self, values: Any, error: Any, last: bool) -> None:
        self.stats["disconnects"] += 1
        first = self.state not in ("disconnected", "error")
        if self.state != "error":
            self.state = "disconnected"
        self._queries.clear()
        self._query_busy = ""
        self._retry_at = 0.0
        self._next_reconcile_at = math.inf
        if first:
            self.ctx.log.warning("CTP trader front disconnected; the API reconnects by itself",
                                 extra={"reason": f"{values[0]:#x}"})

    def _on_error(self, values: Any, error: tuple[int, str] | None, last: bool) -> None:
        self.ctx.log.error("CTP trader error response", extra={
            "request_id": values[0], "error_id": error[0] if error else 0,
            "error_msg": error[1] if error else ""})

    def _on_instrument_status(self, values: Any, error: Any, last: bool) -> None:
        _, instrument, status = values
        self.instrument_status[instrument.encode()] = status

    # --- queries ---------------------------------------------------------------------------

    def _queue_queries(self, names: Iterable[str]) -> None:
        broker, investor = self.settings.broker_id, self.investor.decode()
        requests: dict[str, tuple[Any, str]] = {
            "instruments": (tdapi.CThostFtdcQryInstrumentField(), "ReqQryInstrument"),
            "orders": (request_field(tdapi.CThostFtdcQryOrderField, BrokerID=broker,
                                     InvestorID=investor), "ReqQryOrder"),
            "trades": (request_field(tdapi.CThostFtdcQryTradeField, BrokerID=broker,
                                     InvestorID=investor), "ReqQryTrade"),
            "positions": (request_field(tdapi.CThostFtdcQryInvestorPositionField,
                                        BrokerID=broker, InvestorID=investor),
                          "ReqQryInvestorPosition"),
            "account": (request_field(tdapi.CThostFtdcQryTradingAccountField, BrokerID=broker,
                                      InvestorID=investor), "ReqQryTradingAccount"),
        }
        for name in names:
            field, method = requests[name]
            self._queries.append((name, partial(self._send_query, method, field)))

    def _send_query(self, method: str, field: Any) -> int:
        result: int = getattr(self._api, method)(field, self._request())
        return result

    def _query_row(self, name: str, values: Any, error: tuple[int, str] | None,
                   last: bool) -> bool:
        """Collect a query's rows; True once its last one came."""
        if error is not None:
            self.ctx.log.error(f"CTP {name} query refused",
                               extra={"error_id": error[0], "error_msg": error[1]})
        elif values is not None:
            self._rows.append(values)
        if last:
            self._query_busy = ""
        return last

    def _on_instrument(self, values: Any, error: Any, last: bool) -> None:
        if self._query_row("instrument", values, error, last):
            self.exchanges = {i.encode(): e.encode() for i, e in self._rows}

    def _on_account(self, values: Any, error: Any, last: bool) -> None:
        if self._query_row("account", values, error, last) and self._rows:
            _, balance, available, margin = self._rows[0]
            self.account = {"balance": balance, "available": available, "margin": margin}

    def _on_query_order(self, values: Any, error: Any, last: bool) -> None:
        if self._query_row("order", values, error, last):
            for row in self._rows:
                self._on_order(row, None, True)
            for order in list(self.orders.values()):
                if (order.working and order.legs and not order.seen_by_counter
                        and all(leg.ctp[1] != self._session for leg in order.legs)):
                    self._lose(order, "sent before a disconnect or restart; the counter "
                                      "never received it")
            self._answer_recovered()

    def _on_query_trade(self, values: Any, error: Any, last: bool) -> None:
        if self._query_row("trade", values, error, last):
            for row in self._rows:
                self._on_trade(row, None, True)

    def _on_position(self, values: Any, error: Any, last: bool) -> None:
        if not self._query_row("position", values, error, last):
            return
        counter: dict[tuple[str, str, int], list[int]] = {}
        self._closable.clear()
        for investor, instrument, _, direction, position, today, _ in self._rows:
            side = _POS_DIRECTION.get(direction)
            if side is None:
                continue
            lots = counter.setdefault((investor, instrument, int(side)), [0, 0])
            lots[0] += position
            lots[1] += today
            self._closable[(instrument.encode(), int(side))] = [lots[1], lots[0] - lots[1]]
        if not self._fill_during_query:  # else the two may be a fill apart: the next query
            self.stats["position_mismatches"] += len(self.position_check.compare(
                {key: (lots[0], lots[1]) for key, lots in counter.items()}))
        self._next_reconcile_at = time.monotonic() + self.settings.reconcile_interval_s

    # --- orders out ------------------------------------------------------------------------

    def on_order(self, record: Any) -> None:
        """Bus handler: an ORDER_SEND (or a RECOVERED one, answered once reconciled)."""
        (flags, day, index, source, instrument, exchange, ref, price, volume, direction, offset,
         price_type, account) = _ORDER(record)
        if flags & _RECOVERED:
            self._recovered.append(record.copy())
            if self.state == "ready":
                self._answer_recovered()
            return
        instrument, account = instrument.rstrip(b"\0"), account.rstrip(b"\0")
        key = (source, ref, account)
        order = CtpOrder(key, day or self.trading_day, instrument,
                         exchange.rstrip(b"\0") or self.exchanges.get(instrument, b""), index,
                         price, volume, direction, offset)
        if self.state != "ready":
            self._refuse(order, NOT_READY, f"CTP trader not ready ({self.state})")
            return
        if account != self.investor:
            self._refuse(order, CtpError.INVESTOR_NOT_FOUND, PROMPTS[CtpError.INVESTOR_NOT_FOUND])
            return
        self.orders[key] = order
        for offset, volume in self._legs(order):
            leg = Leg((self._front, self._session, self.refs.next_ref(self._max_order_ref)),
                      offset, volume)
            self.refs.record(key, leg.ctp, self.trading_day)
            self._track(order, leg)
            result = self._api.ReqOrderInsert(self._input_order(order, leg, price_type),
                                              self._request())
            if result != 0:
                leg.status = int(OrderStatus.REJECTED)
                order.settle()
                self.stats["orders_refused"] += 1
                self._publish_order(order, 0, result, f"ReqOrderInsert not sent ({result})")
            else:
                self.stats["orders_sent"] += 1

    def _order_template(self) -> Any:
        """The insert request's fields that never change, set once; ``_input_order`` sets the
        rest on this same struct for each order (the API copies it in ReqOrderInsert)."""
        field = tdapi.CThostFtdcInputOrderField()
        field.BrokerID, field.InvestorID = self.settings.broker_id, self.investor.decode()
        field.UserID = self.settings.user_id
        field.CombHedgeFlag = "1"  # speculation
        field.ContingentCondition = str(tdapi.THOST_FTDC_CC_Immediately)
        field.ForceCloseReason = str(tdapi.THOST_FTDC_FCC_NotForceClose)
        field.MinVolume = 1
        return field

    def _input_order(self, order: CtpOrder, leg: Leg, price_type: int) -> Any:
        field = self._insert_field
        field.InstrumentID = order.instrument.decode()
        field.ExchangeID = order.exchange.decode()
        field.OrderRef = str(leg.ctp[2])
        field.Direction = "0" if order.direction == Direction.BUY else "1"
        field.CombOffsetFlag = _OFFSET_FLAG[Offset(leg.offset)]
        field.VolumeTotalOriginal = leg.volume
        if price_type == PriceType.MARKET:
            field.OrderPriceType = str(tdapi.THOST_FTDC_OPT_AnyPrice)
            field.LimitPrice = 0.0
            field.TimeCondition = str(tdapi.THOST_FTDC_TC_IOC)
        else:
            field.OrderPriceType = str(tdapi.THOST_FTDC_OPT_LimitPrice)
            field.LimitPrice = order.price
            field.TimeCondition = str(tdapi.THOST_FTDC_TC_IOC if price_type in (
                PriceType.FAK, PriceType.FOK) else tdapi.THOST_FTDC_TC_GFD)
        field.VolumeCondition = str(tdapi.THOST_FTDC_VC_CV if price_type == PriceType.FOK
                                    else tdapi.THOST_FTDC_VC_AV)
        return field

    def _legs(self, order: CtpOrder) -> list[tuple[int, int]]:
        """(offset, volume) of each CTP order to send. SHFE/INE: a CLOSE takes yesterday's
        free lots first (close yesterday), the rest as close today; elsewhere one order."""
        if order.offset != Offset.CLOSE or order.exchange not in _SPLIT_CLOSE:
            return [(order.offset, order.volume)]
        held = int(PosDirection.SHORT if order.direction == Direction.BUY else PosDirection.LONG)
        yesterday = self._closable.get((order.instrument, held), [0, 0])[1]
        for other in self.orders.values():
            if other.instrument == order.instrument and other.direction == order.direction:
                yesterday -= sum(leg.volume - leg.traded for leg in other.legs
                                 if leg.working and leg.offset == Offset.CLOSE_YESTERDAY)
        from_yesterday = max(0, min(yesterday, order.volume))
        legs = [(int(Offset.CLOSE_YESTERDAY), from_yesterday)] if from_yesterday else []
        if order.volume > from_yesterday:
            legs.append((int(Offset.CLOSE_TODAY), order.volume - from_yesterday))
        return legs

    def on_cancel(self, record: Any) -> None:
        """Bus handler: a CANCEL_REQ -> ReqOrderAction for the order's CTP key."""
        key = (int(record["source"]), int(record["order_ref"]), bytes(record["account"]))
        order = self.orders.get(key)
        if order is None or self.state != "ready":
            unknown = order or CtpOrder(key, self.trading_day,
                                        bytes(record["instrument"]), bytes(record["exchange"]))
            error = CtpError.ORDER_NOT_FOUND if order is None else NOT_READY
            self._publish_order(unknown, FLAG_CANCEL_REFUSED, error,
                                PROMPTS[CtpError.ORDER_NOT_FOUND] if order is None
                                else f"CTP trader not ready ({self.state})")
            return
        for leg in [leg for leg in order.legs if leg.working] or order.legs[:1]:
            field = tdapi.CThostFtdcInputOrderActionField()
            field.BrokerID, field.InvestorID = self.settings.broker_id, self.investor.decode()
            field.UserID = self.settings.user_id
            field.FrontID, field.SessionID, field.OrderRef = (leg.ctp[0], leg.ctp[1],
                                                              str(leg.ctp[2]))
            field.ExchangeID = order.exchange.decode()
            field.InstrumentID = order.instrument.decode()
            field.OrderSysID = leg.order_sys_id.decode()
            field.ActionFlag = str(tdapi.THOST_FTDC_AF_Delete)
            result = self._api.ReqOrderAction(field, self._request())
            if result != 0:
                self._publish_order(order, FLAG_CANCEL_REFUSED, result,
                                    f"ReqOrderAction not sent ({result})")

    def _track(self, order: CtpOrder, leg: Leg) -> None:
        self.orders[order.engine] = order
        order.legs.append(leg)
        self._by_ctp[leg.ctp] = self._by_ref[leg.ctp[2]] = (order, leg)

    def _refuse(self, order: CtpOrder, error_id: int, message: str) -> None:
        order.status = int(OrderStatus.REJECTED)
        self.stats["orders_refused"] += 1
        self._publish_order(order, 0, error_id, message)

    # --- returns in ------------------------------------------------------------------------

    def _on_order(self, values: Any, error: Any, last: bool) -> None:
        (front, session, ref, exchange, sys_id, _, status, submit, traded, volume, text,
         *_, offset) = values
        found = self._by_ctp.get((front, session, _int(ref)))
        if found is None:
            return  # another client's order
        order, leg = found
        leg.seen_by_counter = True
        leg.order_sys_id = sys_id.strip().encode()
        leg.volume = leg.volume or volume
        leg.offset = leg.offset or int(_OFFSET_OF_FLAG.get(offset[:1], Offset.OPEN))
        order.exchange = order.exchange or exchange.encode()
        mapped = _STATUS.get(status, OrderStatus.SUBMITTING)
        if submit == _INSERT_REJECTED:
            mapped = OrderStatus.REJECTED
        if not leg.working and mapped not in FINAL_STATUSES:
            return  # an older state replayed after a terminal one
        leg.traded = max(leg.traded, traded)
        leg.status = int(mapped)
        order.message = text.encode()[:96]
        order.settle()
        self._publish_order(order, 0, 0, None)

    def _on_trade(self, values: Any, error: Any, last: bool) -> None:
        exchange, trade_id, direction, ref, sys_id, _, price, volume, offset, _, day = values
        trading_day = _int(day) if _int(day) > 0 else self.trading_day
        key = (trading_day, exchange.encode(), trade_id.strip().encode(),
               0 if direction == "0" else 1)
        if key in self._trades_seen:
            self.stats["duplicate_trades"] += 1
            return
        self._trades_seen.add(key)
        found = self._by_ref.get(_int(ref))
        if found is None:
            return  # another client's trade
        order = found[0]
        self.stats["trades"] += 1
        self._fill_during_query = True
        ctp_offset = int(_OFFSET_OF_FLAG.get(offset, Offset.CLOSE))
        self._move_closable(order, ctp_offset, volume)
        out = self._trade_out
        out["ts_ns"], out["trading_day"] = time.time_ns(), trading_day
        out["instrument_index"], out["source"] = order.instrument_index, order.engine[0]
        out["instrument"], out["exchange"] = order.instrument, exchange.encode()
        out["order_ref"], out["order_sys_id"] = order.engine[1], sys_id.strip().encode()
        out["trade_id"], out["price"], out["volume"] = key[2], price, volume
        out["direction"], out["offset"] = order.direction, ctp_offset
        out["account"] = order.engine[2]
        self.ctx.bus.publish(int(EventType.RTN_TRADE), out)

    def _move_closable(self, order: CtpOrder, offset: int, volume: int) -> None:
        held = int(order.direction) if offset == Offset.OPEN else 1 - int(order.direction)
        lots = self._closable.setdefault((order.instrument, held), [0, 0])
        if offset == Offset.OPEN:
            lots[0] += volume
        elif offset == Offset.CLOSE_TODAY:
            lots[0] -= volume
        else:
            lots[1] -= volume

    def _on_insert_refused(self, values: Any, error: tuple[int, str] | None, last: bool) -> None:
        if values is None:
            return
        found = self._by_ref.get(_int(values[0]))
        if found is None or not found[1].working:
            return
        order, leg = found
        error_id, text = error or (0, "")
        leg.status = int(OrderStatus.REJECTED)
        order.settle()
        self.stats["orders_refused"] += 1
        self._publish_order(order, 0, error_id, text)

    def _on_cancel_refused(self, values: Any, error: tuple[int, str] | None, last: bool) -> None:
        if values is None:
            return
        front, session, ref, _, _ = values
        found = self._by_ctp.get((front, session, _int(ref))) or self._by_ref.get(_int(ref))
        if found is None:
            return
        order = found[0]
        error_id, text = error or (0, "")
        self._publish_order(order, FLAG_CANCEL_REFUSED, error_id, text)

    def _publish_order(self, order: CtpOrder, flags: int, error_id: int,
                       message: str | None) -> None:
        state = (order.status, order.traded, order.order_sys_id)
        if not flags and message is None and state == order.published:
            return  # the same state again (a replay, a query after a reconnect)
        order.published = state
        out = self._order_out
        out["ts_ns"], out["flags"], out["trading_day"] = time.time_ns(), flags, order.trading_day
        out["instrument_index"], out["source"] = order.instrument_index, order.engine[0]
        out["instrument"], out["exchange"] = order.instrument, order.exchange
        out["order_ref"], out["order_sys_id"] = order.engine[1], order.order_sys_id
        out["price"], out["volume"], out["volume_traded"] = order.price, order.volume, order.traded
        out["direction"], out["offset"], out["status"] = (order.direction, order.offset,
                                                          order.status)
        out["error_id"] = error_id
        out["message"] = (order.message if message is None else message.encode())[:96]
        out["account"] = order.engine[2]
        self.ctx.bus.publish(int(EventType.RTN_ORDER), out)

    # --- restart ---------------------------------------------------------------------------

    def _read_journal(self) -> None:
        """Trades already published and the desk's positions, from the risk journal; the
        mapping file's orders become known again (their state comes from the order query)."""
        for engine, ctp, day in self.refs.mappings:
            self._track(self.orders.get(engine) or CtpOrder(engine, day), Leg(ctp, 0, 0))
        try:
            reader = JournalReader(self.ctx.host.journal_dir, self.settings.journal,
                                   start="begin", wait_mode=WaitMode.BUSY)
        except JournalNotFound:
            return
        try:
            for kind, record in reader.committed():
                if kind == EventType.RTN_TRADE:
                    self._trades_seen.add((int(record["trading_day"]), bytes(record["exchange"]),
                                           bytes(record["trade_id"]), int(record["direction"])))
                elif kind == EventType.POS_UPDATE:
                    self.position_check.on_published(record)
                elif kind in (EventType.ORDER_SEND, EventType.RTN_ORDER):
                    order = self.orders.get((int(record["source"]), int(record["order_ref"]),
                                             bytes(record["account"])))
                    if order is None:
                        continue
                    if kind == EventType.ORDER_SEND:
                        self._fill_from(order, record)
                    elif not int(record["flags"]):
                        order.status, order.traded = int(record["status"]), int(
                            record["volume_traded"])
                        order.order_sys_id = bytes(record["order_sys_id"])
                        order.published = (order.status, order.traded, order.order_sys_id)
        finally:
            reader.close()

    @staticmethod
    def _fill_from(order: CtpOrder, record: Any) -> None:
        order.instrument, order.exchange = bytes(record["instrument"]), bytes(record["exchange"])
        order.instrument_index = int(record["instrument_index"])
        order.price, order.volume = float(record["price"]), int(record["volume"])
        order.direction, order.offset = int(record["direction"]), int(record["offset"])

    def _answer_recovered(self) -> None:
        """Each RECOVERED ORDER_SEND: the counter's state of it, or LOST with an ALERT."""
        recovered, self._recovered = self._recovered, []
        for record in recovered:
            key = (int(record["source"]), int(record["order_ref"]), bytes(record["account"]))
            order = self.orders.get(key)
            if order is not None and order.seen_by_counter:
                self._publish_order(order, 0, 0, None)  # unless the order query just did
                continue
            lost = order or CtpOrder(key, int(record["trading_day"]))
            self._fill_from(lost, record)
            if lost.status != OrderStatus.LOST:
                self._lose(lost, "in flight at a restart; the counter never received it")

    def _lose(self, order: CtpOrder, why: str) -> None:
        """An order the counter does not know: LOST, explicitly, with an ALERT."""
        order.status = int(OrderStatus.LOST)
        for leg in order.legs:
            leg.status = int(OrderStatus.LOST)
        self.stats["lost"] += 1
        self._publish_order(order, 0, 0, why)
        source, ref, account = order.engine
        self._alerts.publish(AlertLevel.CRITICAL, b"order_lost",
                    f"order {ref} of source {source} ({account.decode()}): {why}")

    # --- metrics ---------------------------------------------------------------------------

    def metrics(self) -> Iterable[Metric]:
        state = GaugeMetricFamily("hft_ctp_td_state", "1 for the CTP trader's current state",
                                  labels=["state"])
        for name in ("disconnected", "connecting", "authenticating", "logging_in",
                     "confirming", "querying", "ready", "error"):
            state.add_metric([name], int(self.state == name))
        yield state
        for name, value in list(self.stats.items()):
            yield CounterMetricFamily(f"hft_ctp_td_{name}", f"CTP trader: {name}", value=value)


def _int(text: Any) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        return -1


def _with_credentials(config: CtpTraderConfig) -> CtpTraderConfig:
    """The config with what it leaves empty from the environment, then the credentials file;
    the fronts checked."""
    settings = with_credentials(config, ENVIRONMENT, file=config.credentials_file,
                                needed=("fronts", "broker_id", "user_id", "password"),
                                who="CTP trader")
    for front in settings.fronts:
        if not front.startswith(("tcp://", "ssl://")):
            raise ValueError(f"CTP front {front!r} is not tcp://host:port or ssl://host:port")
    return settings

# ruff: noqa: N802  (the SPI method names are CTP's)
"""The CTP trader SPI: every callback copied into plain values and queued for the main thread.

openctp-ctp calls the SPI from the API's own thread, and a struct it passes is valid only
during the call. The gateway's state, the bus and the risk journal belong to the daemon's
main thread, so each callback here reads the fields the gateway needs into a tuple and puts
``(kind, values, error, is_last)`` on a thread-safe queue and wakes the daemon's loop (which
may be asleep on its journals); the gateway's poller drains the queue. Nothing else happens
on the API's thread.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from typing import Any

from openctp_ctp import tdapi

Callback = tuple[str, tuple[Any, ...] | None, tuple[int, str] | None, bool]
"""(kind, the struct's fields or None, (ErrorID, ErrorMsg) or None, is last)."""

CALLBACK_KINDS = ("connected", "disconnected", "authenticated", "login", "settlement_confirmed",
                  "instrument", "account", "position", "query_order", "query_trade", "order",
                  "trade", "insert_refused", "cancel_refused", "instrument_status", "error")
"""Every ``kind`` this SPI queues; the gateway has an ``_on_<kind>`` handler for each."""
LOGIN_FIELDS = ("TradingDay", "FrontID", "SessionID", "MaxOrderRef")
ORDER_FIELDS = ("FrontID", "SessionID", "OrderRef", "ExchangeID", "OrderSysID", "InstrumentID",
                "OrderStatus", "OrderSubmitStatus", "VolumeTraded", "VolumeTotalOriginal",
                "StatusMsg", "InvestorID", "TradingDay", "LimitPrice", "Direction",
                "CombOffsetFlag")
TRADE_FIELDS = ("ExchangeID", "TradeID", "Direction", "OrderRef", "OrderSysID", "InstrumentID",
                "Price", "Volume", "OffsetFlag", "InvestorID", "TradingDay")
INPUT_ORDER_FIELDS = ("OrderRef", "InstrumentID", "InvestorID")
ACTION_FIELDS = ("FrontID", "SessionID", "OrderRef", "OrderSysID", "InvestorID")
POSITION_FIELDS = ("InvestorID", "InstrumentID", "ExchangeID", "PosiDirection", "Position",
                   "TodayPosition", "PositionDate")
ACCOUNT_FIELDS = ("AccountID", "Balance", "Available", "CurrMargin")
INSTRUMENT_FIELDS = ("InstrumentID", "ExchangeID")
STATUS_FIELDS = ("ExchangeID", "InstrumentID", "InstrumentStatus")


def _values(struct: Any, names: Sequence[str]) -> tuple[Any, ...] | None:
    return None if struct is None else tuple(getattr(struct, name) for name in names)


def _error(info: Any) -> tuple[int, str] | None:
    if info is None or info.ErrorID == 0:
        return None
    return int(info.ErrorID), str(info.ErrorMsg)


class TraderSpi(tdapi.CThostFtdcTraderSpi):  # type: ignore[misc]  # openctp-ctp is untyped
    """Queues every callback the gateway handles (see the module docstring)."""

    def __init__(self, inbox: queue.SimpleQueue[Callback], wake: Callable[[], None]) -> None:
        super().__init__()
        self._queue = inbox.put
        self._wake = wake

    def _put(self, callback: Callback) -> None:
        self._queue(callback)
        self._wake()  # after the put: the loop's last look before its sleep then sees it

    def OnFrontConnected(self) -> None:
        self._put(("connected", None, None, True))

    def OnFrontDisconnected(self, reason: int) -> None:
        self._put(("disconnected", (reason,), None, True))

    def OnRspAuthenticate(self, field: Any, info: Any, request_id: int, last: bool) -> None:
        self._put(("authenticated", None, _error(info), last))

    def OnRspUserLogin(self, field: Any, info: Any, request_id: int, last: bool) -> None:
        self._put(("login", _values(field, LOGIN_FIELDS), _error(info), last))

    def OnRspSettlementInfoConfirm(self, field: Any, info: Any, request_id: int,
                                   last: bool) -> None:
        self._put(("settlement_confirmed", None, _error(info), last))

    def OnRspQryInstrument(self, field: Any, info: Any, request_id: int, last: bool) -> None:
        self._put(("instrument", _values(field, INSTRUMENT_FIELDS), _error(info), last))

    def OnRspQryTradingAccount(self, field: Any, info: Any, request_id: int, last: bool) -> None:
        self._put(("account", _values(field, ACCOUNT_FIELDS), _error(info), last))

    def OnRspQryInvestorPosition(self, field: Any, info: Any, request_id: int,
                                 last: bool) -> None:
        self._put(("position", _values(field, POSITION_FIELDS), _error(info), last))

    def OnRspQryOrder(self, field: Any, info: Any, request_id: int, last: bool) -> None:
        self._put(("query_order", _values(field, ORDER_FIELDS), _error(info), last))

    def OnRspQryTrade(self, field: Any, info: Any, request_id: int, last: bool) -> None:
        self._put(("query_trade", _values(field, TRADE_FIELDS), _error(info), last))

    def OnRtnOrder(self, field: Any) -> None:
        self._put(("order", _values(field, ORDER_FIELDS), None, True))

    def OnRtnTrade(self, field: Any) -> None:
        self._put(("trade", _values(field, TRADE_FIELDS), None, True))

    def OnRspOrderInsert(self, field: Any, info: Any, request_id: int, last: bool) -> None:
        self._put(("insert_refused", _values(field, INPUT_ORDER_FIELDS), _error(info), last))

    def OnErrRtnOrderInsert(self, field: Any, info: Any) -> None:
        self._put(("insert_refused", _values(field, INPUT_ORDER_FIELDS), _error(info), True))

    def OnRspOrderAction(self, field: Any, info: Any, request_id: int, last: bool) -> None:
        self._put(("cancel_refused", _values(field, ACTION_FIELDS), _error(info), last))

    def OnErrRtnOrderAction(self, field: Any, info: Any) -> None:
        self._put(("cancel_refused", _values(field, ACTION_FIELDS), _error(info), True))

    def OnRtnInstrumentStatus(self, field: Any) -> None:
        self._put(("instrument_status", _values(field, STATUS_FIELDS), None, True))

    def OnRspError(self, info: Any, request_id: int, last: bool) -> None:
        self._put(("error", (request_id,), _error(info), last))

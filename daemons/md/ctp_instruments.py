# ruff: noqa: N802  (the SPI and API method names are CTP's)
"""Instrument metadata from a CTP trader front (``ReqQryInstrument``), for live mode.

md fronts cannot list instruments, so at start-up hft_md asks the trader front once: connect
-> ``ReqAuthenticate`` (when an app id is given; production fronts require it) ->
``ReqUserLogin`` -> ``ReqQryInstrument`` (everything) -> ``OnRspQryInstrument`` per instrument
until ``bIsLast`` -> ``Release``. A disconnect on the way starts over when the API has
reconnected; a refused login is not retried (brokers lock accounts after wrong passwords).

Exchange, product code, ``VolumeMultiple`` and ``PriceTick`` come from the front. CTP has no
trading sessions, so the session template comes from the product table by product code, and
instruments of products the table lacks are skipped with a warning. Daily limit prices come
with every depth snapshot (``UpperLimitPrice``/``LowerLimitPrice``), not from this query.

Threads: callbacks run on the API's thread and only fill the result; the caller waits on an
event and reads the result after ``Release``, which waits for a callback in progress.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from openctp_ctp import tdapi

from hft.daemons.md.ctp import request_field
from hft.daemons.refdata.instruments import Instrument, InstrumentTable, Product, ProductTable
from hft.daemons.runtime.secrets import Secret

log = logging.getLogger(__name__)

FUTURES = str(tdapi.THOST_FTDC_PC_Futures)
"""ProductClass of futures ('1'); options are '2'."""
_ROW_FIELDS = ("InstrumentID", "InstrumentName", "ExchangeID", "ProductID", "ProductClass",
               "VolumeMultiple", "PriceTick", "ExpireDate")


@dataclass(frozen=True)
class ListedInstrument:
    """One instrument the front lists, with its product as the front describes it."""

    id: str
    name: str
    product: Product
    expire_date: int
    """YYYYMMDD, 0 if the front gave none."""


class InstrumentQueryError(RuntimeError):
    """The front refused a step, or did not answer in time; the message says which."""


class TraderApi(Protocol):
    """The part of CThostFtdcTraderApi the query calls (the real one, or CtpTraderEmulator)."""

    def RegisterSpi(self, spi: Any) -> None: ...
    def RegisterFront(self, address: str) -> None: ...
    def SubscribePrivateTopic(self, resume_type: int) -> None: ...
    def SubscribePublicTopic(self, resume_type: int) -> None: ...
    def Init(self) -> None: ...
    def ReqAuthenticate(self, field: Any, request_id: int) -> int: ...
    def ReqUserLogin(self, field: Any, request_id: int) -> int: ...
    def ReqQryInstrument(self, field: Any, request_id: int) -> int: ...
    def Release(self) -> None: ...


TraderApiFactory = Callable[[str], TraderApi]


def query_instruments(fronts: Sequence[str], broker_id: str, user_id: str,
                      password: str | Secret, *, products: ProductTable, flow_dir: Path,
                      app_id: str = "", auth_code: str | Secret = "",
                      product_classes: Collection[str] = (FUTURES,),
                      api_factory: TraderApiFactory = tdapi.CThostFtdcTraderApi.CreateFtdcTraderApi,
                      timeout_s: float = 30.0) -> list[ListedInstrument]:
    """Every instrument of ``product_classes`` the trader front lists, with its product."""
    if not fronts:
        raise ValueError("no CTP trader front given")
    if isinstance(password, Secret):
        password = password.reveal()
    if isinstance(auth_code, Secret):
        auth_code = auth_code.reveal()
    login = request_field(tdapi.CThostFtdcReqUserLoginField, BrokerID=broker_id, UserID=user_id,
                          Password=password)
    authenticate = request_field(tdapi.CThostFtdcReqAuthenticateField, BrokerID=broker_id,
                                 UserID=user_id, AppID=app_id, AuthCode=auth_code)
    query = _InstrumentQuery(fronts, broker_id, user_id, login, authenticate if app_id else None)
    flow_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    rows = query.run(api_factory(f"{flow_dir}{os.sep}"), timeout_s)
    return listed_instruments(rows, products, product_classes)


def register_listed(table: InstrumentTable, listed: Iterable[ListedInstrument]) -> list[Instrument]:
    """Register the instruments with the products the front described (so their multiplier
    and tick are the front's, not the shipped table's)."""
    return [table.register(instrument.id, instrument.product) for instrument in listed]


def listed_instruments(rows: Iterable[tuple[Any, ...]], products: ProductTable,
                       product_classes: Collection[str]) -> list[ListedInstrument]:
    """Rows of _ROW_FIELDS values -> ListedInstrument, sessions from ``products``."""
    listed: list[ListedInstrument] = []
    unknown: set[str] = set()
    invalid: list[str] = []
    shared: dict[tuple[str, str, int, float], Product] = {}
    for instrument_id, name, exchange, code, product_class, multiple, tick, expire in rows:
        if product_class not in product_classes:
            continue
        if code not in products:
            unknown.add(code)
            continue
        if multiple <= 0 or tick <= 0:
            invalid.append(instrument_id)
            continue
        known = products[code]
        key = (exchange, code, multiple, tick)
        product = shared.get(key)
        if product is None:
            product = shared[key] = Product(exchange, code, known.name, multiple, tick,
                                            max(known.precision, _decimals(tick)), known.session)
        listed.append(ListedInstrument(instrument_id, name, product,
                                       int(expire) if expire.isdigit() else 0))
    if unknown:
        log.warning("instruments of products without a session template skipped",
                    extra={"products": sorted(unknown)})
    if invalid:
        log.warning("instruments without a multiplier or price tick skipped",
                    extra={"instruments": invalid})
    return listed


def _decimals(tick: float) -> int:
    exponent = Decimal(repr(tick)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


class _InstrumentQuery:
    """One query's state; its callbacks run on the API's thread."""

    def __init__(self, fronts: Sequence[str], broker_id: str, user_id: str, login: Any,
                 authenticate: Any | None) -> None:
        self.fronts = tuple(fronts)
        self.broker_id = broker_id
        self.user_id = user_id
        self._login_request = login
        self._authenticate_request = authenticate
        self.stage = "connecting"
        self.rows: list[tuple[Any, ...]] = []
        self._api: TraderApi | None = None
        self._error: str | None = None
        self._done = threading.Event()
        self._request_id = 0

    def run(self, api: TraderApi, timeout_s: float) -> list[tuple[Any, ...]]:
        self._api = api
        spi = _TraderSpi(self)
        api.RegisterSpi(spi)
        api.SubscribePrivateTopic(tdapi.THOST_TERT_QUICK)  # no replay of the day's flow
        api.SubscribePublicTopic(tdapi.THOST_TERT_QUICK)
        for front in self.fronts:
            api.RegisterFront(front)
        api.Init()
        try:
            answered = self._done.wait(timeout_s)
        finally:
            api.RegisterSpi(None)
            api.Release()
        if not answered:
            raise InstrumentQueryError(f"no instrument list from {list(self.fronts)} within "
                                       f"{timeout_s} s (still {self.stage})")
        if self._error is not None:
            raise InstrumentQueryError(self._error)
        log.info("CTP instruments listed", extra={"instruments": len(self.rows),
                                                  "fronts": list(self.fronts)})
        return self.rows

    def connected(self) -> None:
        self.rows.clear()
        if self._authenticate_request is not None:
            self.stage = "authenticating"
            self._send("ReqAuthenticate", self._live_api().ReqAuthenticate,
                       self._authenticate_request)
        else:
            self.login()

    def authenticated(self, info: Any) -> None:
        if self._refused("authentication", info):
            return
        self.login()

    def login(self) -> None:
        self.stage = "logging in"
        self._send("ReqUserLogin", self._live_api().ReqUserLogin, self._login_request)

    def logged_in(self, info: Any) -> None:
        if self._refused("login", info):
            return
        self.stage = "querying instruments"
        self._send("ReqQryInstrument", self._live_api().ReqQryInstrument,
                   tdapi.CThostFtdcQryInstrumentField())

    def instrument(self, instrument: Any, info: Any, is_last: bool) -> None:
        if self._refused("ReqQryInstrument", info):
            return
        if instrument is not None:
            self.rows.append(tuple(getattr(instrument, name) for name in _ROW_FIELDS))
        if is_last:
            self._done.set()

    def disconnected(self, reason: int) -> None:
        if not self._done.is_set():
            log.warning("CTP trader front disconnected during the instrument query; "
                        "starting over when the API has reconnected",
                        extra={"reason": f"{reason:#x}", "stage": self.stage})
            self.stage = "reconnecting"

    def error(self, info: Any) -> None:
        self._refused(f"a request while {self.stage}", info)

    def _live_api(self) -> TraderApi:
        assert self._api is not None, "callbacks come only after run() registered the SPI"
        return self._api

    def _send(self, name: str, request: Callable[[Any, int], int], field: Any) -> None:
        self._request_id += 1
        result = request(field, self._request_id)
        if result != 0:
            self._fail(f"{name} was not sent (result {result}) while {self.stage}")

    def _refused(self, step: str, info: Any) -> bool:
        if info is None or info.ErrorID == 0:
            return False
        self._fail(f"CTP trader front {list(self.fronts)} refused {step} for user "
                   f"{self.user_id!r} of broker {self.broker_id!r}: ErrorID {info.ErrorID}: "
                   f"{info.ErrorMsg}")
        return True

    def _fail(self, message: str) -> None:
        if not self._done.is_set():
            self._error = message
            self._done.set()


class _TraderSpi(tdapi.CThostFtdcTraderSpi):  # type: ignore[misc]  # openctp-ctp is untyped
    """The SWIG director the API calls, handing each callback to the query."""

    def __init__(self, query: _InstrumentQuery) -> None:
        super().__init__()
        self._query = query

    def OnFrontConnected(self) -> None:
        self._query.connected()

    def OnFrontDisconnected(self, reason: int) -> None:
        self._query.disconnected(reason)

    def OnRspAuthenticate(self, answer: Any, info: Any, request_id: int, is_last: bool) -> None:
        self._query.authenticated(info)

    def OnRspUserLogin(self, login: Any, info: Any, request_id: int, is_last: bool) -> None:
        self._query.logged_in(info)

    def OnRspQryInstrument(self, instrument: Any, info: Any, request_id: int, is_last: bool) -> None:
        self._query.instrument(instrument, info, is_last)

    def OnRspError(self, info: Any, request_id: int, is_last: bool) -> None:
        self._query.error(info)

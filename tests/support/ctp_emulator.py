"""Stand-ins for the CTP md and trader APIs at the API boundary, for tests and dry runs
without a front.

Each emulator has the methods our clients call on the real API and drives the real SPI object
from its own thread, one callback at a time, with real openctp-ctp structs, the way the real
API does:

- ``Init`` -> ``OnFrontConnected``;
- ``ReqUserLogin`` -> ``OnRspUserLogin`` with the TradingDay, or ErrorID 3 and a GB18030
  ``CTP:不合法的登录`` for credentials other than the configured ones;
- :meth:`disconnect` -> ``OnFrontDisconnected(reason)``, the session (login, subscriptions)
  forgotten, responses still queued for the old connection dropped, and after a delay
  ``OnFrontConnected`` again: the client must log in (and subscribe) again by itself.

:class:`CtpMdEmulator` adds ``SubscribeMarketData`` -> one ``OnRspSubMarketData`` per
instrument (``bIsLast`` on the last of the request; like a real md front it acknowledges any
id) and :meth:`~CtpMdEmulator.push` / :meth:`~CtpMdEmulator.play` ->
``OnRtnDepthMarketData``, only for instruments subscribed on the current connection.
:class:`CtpTraderEmulator` adds ``ReqAuthenticate`` and ``ReqQryInstrument`` ->
``OnRspQryInstrument`` per listed instrument.

``Release`` joins the emulator's thread (so it waits for a callback in progress, like the real
one) and refuses to run on that thread, where the real API would deadlock. A callback that
raises is logged and counted in ``callback_errors`` and the thread goes on, as openctp's
SWIG directors print the traceback and go on.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, Self

from openctp_ctp import mdapi, tdapi

from hft.daemons.md.depth import DepthValues
from hft.daemons.refdata.clock import CHINA
from hft.daemons.runtime.libc import libc

log = logging.getLogger(__name__)

NO_TRADING_DAY = "19800100"
"""What the real GetTradingDay returns before a login."""
INVALID_LOGIN = (3, "CTP:不合法的登录")
NOT_LOGGED_IN = (6, "CTP:还没有登录")
AUTHENTICATION_FAILED = (63, "CTP:客户端认证失败")
_OK = (0, "CTP:正确")



class _EmulatedFront:
    """What both APIs share: the callback thread, connection, login and disconnects."""

    _structs: Any
    """The openctp module whose structs this API's callbacks carry (mdapi or tdapi)."""

    def __init__(self, *, broker_id: str, user_id: str, password: str, trading_day: str,
                 check_credentials: bool, reconnect_after_s: float) -> None:
        self.broker_id = broker_id
        self.user_id = user_id
        self._password = password
        self.trading_day = trading_day
        """TradingDay of the next login response (change it to emulate a new day)."""
        self.check_credentials = check_credentials
        self.reconnect_after_s = reconnect_after_s
        self.flow_path: str | None = None
        self.fronts: list[str] = []
        self.login_attempts = 0
        self.callback_errors = 0
        self._spi: Any = None
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, int | None, Callable[[], None]]] = []
        self._serial = itertools.count()
        self._thread: threading.Thread | None = None
        self._released = False
        self._epoch = 0  # bumped by every disconnect: the old connection's responses are dropped
        self._connected = False
        self._logged_in = False
        self._refusals: list[tuple[int, str]] = []

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(broker_id={self.broker_id!r}, user_id={self.user_id!r}, "
                f"connected={self._connected}, logged_in={self._logged_in})")

    def factory(self, flow_path: str = "", *_: object) -> Self:
        """An ``api_factory`` (CreateFtdc*Api's signature) that hands out this emulator once."""
        if self.flow_path is not None:
            raise RuntimeError("this emulator was already handed out: make one per API")
        self.flow_path = flow_path
        return self

    # --- the API methods both have ---------------------------------------------------------

    def RegisterSpi(self, spi: Any) -> None:
        with self._cond:
            self._spi = spi

    def RegisterFront(self, address: str) -> None:
        self._check_alive()
        if not address.startswith(("tcp://", "ssl://")):
            raise ValueError(f"front address {address!r} is not tcp://host:port")
        self.fronts.append(address)

    def Init(self) -> None:
        self._check_alive()
        if self._thread is not None:
            raise RuntimeError("Init() called twice")
        if not self.fronts:
            raise RuntimeError("Init() without a registered front")
        self._thread = threading.Thread(target=self._run, name=f"{type(self).__name__}",
                                        daemon=True)
        self._thread.start()
        self._schedule(self._connect)

    def ReqUserLogin(self, field: Any, request_id: int) -> int:
        self._check_alive()
        offered = (field.BrokerID, field.UserID, field.Password)  # read now: callers reuse fields
        with self._cond:
            if not self._connected:
                return -1
            self.login_attempts += 1
            refusal = self._refusals.pop(0) if self._refusals else self._login_refusal()
            epoch = self._epoch
        if (refusal is None and self.check_credentials
                and offered != (self.broker_id, self.user_id, self._password)):
            refusal = INVALID_LOGIN
        self._schedule(partial(self._answer_login, request_id, refusal), epoch=epoch)
        return 0

    def GetTradingDay(self) -> str:
        with self._cond:
            return self.trading_day if self._logged_in else NO_TRADING_DAY

    def Release(self) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError("Release() from an SPI callback: the real API deadlocks there")
        with self._cond:
            self._released = True
            self._spi = None
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    def Join(self) -> int:
        if self._thread is not None:
            self._thread.join()
        return 0

    # --- what the front does -------------------------------------------------------------

    def disconnect(self, reason: int = 0x1001, *, reconnect_after_s: float | None = None,
                   stay_down: bool = False) -> None:
        """Drop the connection (``OnFrontDisconnected(reason)``) and reconnect after
        ``reconnect_after_s`` (default: the emulator's), unless ``stay_down``."""
        delay = self.reconnect_after_s if reconnect_after_s is None else reconnect_after_s
        self._schedule(partial(self._drop, reason, None if stay_down else delay))

    def call_soon(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the callback thread after the callbacks queued so far (to make
        the SPI see anything else the real API may do)."""
        self._schedule(action)

    def refuse_logins(self, count: int, error: tuple[int, str] = (7, "CTP:还没有初始化")) -> None:
        """Answer the next ``count`` login requests with ``error`` (ErrorID, ErrorMsg)."""
        with self._cond:
            self._refusals.extend([error] * count)

    # --- the emulator's thread -----------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._released:
                        return
                    delay = self._queue[0][0] - time.monotonic() if self._queue else None
                    if delay is not None and delay <= 0:
                        break
                    self._cond.wait(delay)
                _, _, epoch, action = heapq.heappop(self._queue)
                if epoch is not None and epoch != self._epoch:
                    continue
            try:
                action()
            except Exception:
                self.callback_errors += 1
                log.exception("SPI callback raised")

    def _schedule(self, action: Callable[[], None], *, epoch: int | None = None,
                  due: float | None = None) -> None:
        with self._cond:
            heapq.heappush(self._queue, (time.monotonic() if due is None else due,
                                         next(self._serial), epoch, action))
            self._cond.notify_all()

    def _connect(self) -> None:
        with self._cond:
            if self._connected:
                return
            self._connected = True
            spi = self._spi
        if spi is not None:
            spi.OnFrontConnected()

    def _drop(self, reason: int, reconnect_after_s: float | None) -> None:
        with self._cond:
            if not self._connected:
                return
            self._epoch += 1
            self._connected = self._logged_in = False
            self._forget_session()
            spi = self._spi
        if spi is not None:
            spi.OnFrontDisconnected(reason)
        if reconnect_after_s is not None:
            self._schedule(self._connect, due=time.monotonic() + reconnect_after_s)

    def _forget_session(self) -> None:
        """What the front forgets with a connection, beyond the login (lock held)."""

    def _login_refusal(self) -> tuple[int, str] | None:
        """A refusal the front has before it checks the credentials (lock held)."""
        return None

    def _answer_login(self, request_id: int, refusal: tuple[int, str] | None) -> None:
        login = self._structs.CThostFtdcRspUserLoginField()
        if refusal is None:
            now = dt.datetime.now(CHINA).strftime("%H:%M:%S")
            login.TradingDay, login.LoginTime = self.trading_day, now
            login.BrokerID, login.UserID = self.broker_id, self.user_id
            login.SystemName, login.FrontID, login.SessionID = "hft-emulator", 1, request_id
            login.SHFETime = login.DCETime = login.CZCETime = login.FFEXTime = login.INETime = now
        with self._cond:
            self._logged_in = refusal is None
            spi = self._spi
        if spi is not None:
            spi.OnRspUserLogin(login, self._rsp_info(*(refusal or _OK)), request_id, True)

    def _rsp_info(self, error_id: int, message: str) -> Any:
        info = self._structs.CThostFtdcRspInfoField()
        info.ErrorID = error_id
        set_gb18030(info, "ErrorMsg", message)
        return info

    def _check_alive(self) -> None:
        if self._released:
            raise RuntimeError("the API was released")


class CtpMdEmulator(_EmulatedFront):
    """An emulated CThostFtdcMdApi and md front. Accepts ``broker_id``/``user_id``/
    ``password`` (any credentials when ``check_credentials`` is False) and reports
    ``trading_day`` at login."""

    _structs = mdapi

    def __init__(self, *, broker_id: str = "9999", user_id: str = "000001", password: str = "",
                 trading_day: str = "20260105", check_credentials: bool = True,
                 reconnect_after_s: float = 0.05) -> None:
        super().__init__(broker_id=broker_id, user_id=user_id, password=password,
                         trading_day=trading_day, check_credentials=check_credentials,
                         reconnect_after_s=reconnect_after_s)
        self.delivered = 0
        """Snapshots handed to OnRtnDepthMarketData."""
        self.dropped = 0
        """Snapshots not delivered: not subscribed, not logged in, or no SPI."""
        self._subscribed: set[str] = set()

    @staticmethod
    def GetApiVersion() -> str:
        return "emulated " + str(mdapi.CThostFtdcMdApi.GetApiVersion())

    def SubscribeMarketData(self, instrument_ids: list[str], count: int) -> int:
        return self._request_subscription(instrument_ids, count, subscribe=True)

    def UnSubscribeMarketData(self, instrument_ids: list[str], count: int) -> int:
        return self._request_subscription(instrument_ids, count, subscribe=False)

    @property
    def subscribed(self) -> frozenset[str]:
        """Instruments subscribed on the current connection."""
        with self._cond:
            return frozenset(self._subscribed)

    def push(self, snapshot: DepthValues | Any) -> None:
        """Deliver one snapshot (DepthValues, or a CThostFtdcDepthMarketDataField) as
        soon as the callbacks queued before it have run."""
        self._schedule(partial(self._deliver, _depth_struct(snapshot)))

    def play(self, snapshots: Iterable[DepthValues | Any], interval_s: float = 0.0) -> None:
        """Deliver ``snapshots`` in order, ``interval_s`` apart (a scripted feed)."""
        start = time.monotonic()
        for n, snapshot in enumerate(snapshots):
            self._schedule(partial(self._deliver, _depth_struct(snapshot)),
                           due=start + n * interval_s)

    def _forget_session(self) -> None:
        self._subscribed.clear()

    def _request_subscription(self, instrument_ids: list[str], count: int, *,
                              subscribe: bool) -> int:
        self._check_alive()
        if not isinstance(instrument_ids, list) or not all(isinstance(i, str) for i in instrument_ids):
            raise TypeError("list must contain strings")  # what openctp's wrapper says
        if count != len(instrument_ids) or not instrument_ids:
            raise ValueError(f"nCount {count} for a list of {len(instrument_ids)} instruments")
        with self._cond:
            if not self._connected:
                return -1
            epoch = self._epoch
        self._schedule(partial(self._answer_subscription, list(instrument_ids), subscribe),
                       epoch=epoch)
        return 0

    def _answer_subscription(self, instrument_ids: list[str], subscribe: bool) -> None:
        last = len(instrument_ids) - 1
        for n, instrument_id in enumerate(instrument_ids):
            with self._cond:
                if self._logged_in:
                    if subscribe:
                        self._subscribed.add(instrument_id)
                    else:
                        self._subscribed.discard(instrument_id)
                spi, logged_in = self._spi, self._logged_in
            if spi is None:
                return
            field = mdapi.CThostFtdcSpecificInstrumentField()
            field.InstrumentID = instrument_id
            info = self._rsp_info(*(_OK if logged_in else NOT_LOGGED_IN))
            callback = spi.OnRspSubMarketData if subscribe else spi.OnRspUnSubMarketData
            callback(field, info, 0, n == last)

    def _deliver(self, depth: Any) -> None:
        with self._cond:
            spi = self._spi
            wanted = self._logged_in and depth.InstrumentID in self._subscribed
        if spi is None or not wanted:
            self.dropped += 1
            return
        self.delivered += 1
        spi.OnRtnDepthMarketData(depth)


class CtpTraderEmulator(_EmulatedFront):
    """An emulated CThostFtdcTraderApi and trader front, for the instrument query: lists
    ``instruments`` (CThostFtdcInstrumentField values by field name). With an ``app_id``,
    a login needs a ReqAuthenticate with that app id and ``auth_code`` first."""

    _structs = tdapi

    def __init__(self, instruments: Iterable[Mapping[str, Any]], *, broker_id: str = "9999",
                 user_id: str = "000001", password: str = "", app_id: str = "",
                 auth_code: str = "", trading_day: str = "20260105",
                 check_credentials: bool = True, reconnect_after_s: float = 0.05) -> None:
        super().__init__(broker_id=broker_id, user_id=user_id, password=password,
                         trading_day=trading_day, check_credentials=check_credentials,
                         reconnect_after_s=reconnect_after_s)
        self.instruments = [dict(fields) for fields in instruments]
        self.app_id = app_id
        self._auth_code = auth_code
        self._authenticated = False
        self.topics: dict[str, int] = {}
        """Resume types given to SubscribePrivateTopic / SubscribePublicTopic."""
        self.queries = 0

    @staticmethod
    def GetApiVersion() -> str:
        return "emulated " + str(tdapi.CThostFtdcTraderApi.GetApiVersion())

    def SubscribePrivateTopic(self, resume_type: int) -> None:
        self.topics["private"] = resume_type

    def SubscribePublicTopic(self, resume_type: int) -> None:
        self.topics["public"] = resume_type

    def ReqAuthenticate(self, field: Any, request_id: int) -> int:
        self._check_alive()
        offered = (field.BrokerID, field.UserID, field.AppID, field.AuthCode)
        with self._cond:
            if not self._connected:
                return -1
            epoch = self._epoch
        valid = offered == (self.broker_id, self.user_id, self.app_id, self._auth_code)
        self._schedule(partial(self._answer_authenticate, request_id, valid), epoch=epoch)
        return 0

    def ReqQryInstrument(self, field: Any, request_id: int) -> int:
        self._check_alive()
        wanted = field.InstrumentID, field.ExchangeID, field.ProductID
        with self._cond:
            if not self._connected:
                return -1
            self.queries += 1
            epoch = self._epoch
        self._schedule(partial(self._answer_query, request_id, wanted), epoch=epoch)
        return 0

    def _forget_session(self) -> None:
        self._authenticated = False

    def _login_refusal(self) -> tuple[int, str] | None:
        return AUTHENTICATION_FAILED if self.app_id and not self._authenticated else None

    def _answer_authenticate(self, request_id: int, valid: bool) -> None:
        answer = tdapi.CThostFtdcRspAuthenticateField()
        answer.BrokerID, answer.UserID, answer.AppID = self.broker_id, self.user_id, self.app_id
        with self._cond:
            self._authenticated = valid
            spi = self._spi
        if spi is not None:
            info = self._rsp_info(*(_OK if valid else AUTHENTICATION_FAILED))
            spi.OnRspAuthenticate(answer, info, request_id, True)

    def _answer_query(self, request_id: int, wanted: tuple[str, str, str]) -> None:
        with self._cond:
            spi, logged_in = self._spi, self._logged_in
        if spi is None:
            return
        if not logged_in:
            spi.OnRspQryInstrument(None, self._rsp_info(*NOT_LOGGED_IN), request_id, True)
            return
        keys = ("InstrumentID", "ExchangeID", "ProductID")
        listed = [fields for fields in self.instruments
                  if all(not want or fields.get(key) == want for key, want in zip(keys, wanted, strict=True))]
        if not listed:
            spi.OnRspQryInstrument(None, None, request_id, True)
        for n, fields in enumerate(listed):
            instrument = tdapi.CThostFtdcInstrumentField()
            for name, value in fields.items():
                if name == "InstrumentName":
                    set_gb18030(instrument, name, value)
                else:
                    setattr(instrument, name, value)
            spi.OnRspQryInstrument(instrument, None, request_id, n == len(listed) - 1)


def _depth_struct(snapshot: DepthValues | Any) -> Any:
    """A CThostFtdcDepthMarketDataField from DepthValues (texts as bytes or str)."""
    if isinstance(snapshot, mdapi.CThostFtdcDepthMarketDataField):
        return snapshot
    depth = mdapi.CThostFtdcDepthMarketDataField()
    for name, value in snapshot._asdict().items():
        setattr(depth, name, value.decode() if isinstance(value, bytes) else value)
    return depth


def set_gb18030(struct: Any, name: str, text: str) -> None:
    """Store ``text`` in a char-array field GB18030-encoded, as a front sends it (openctp's
    setter stores UTF-8, which its GB18030-decoding getter would then misread)."""
    encoded = text.encode("gb18030")
    placeholder = b"\x1f" * len(encoded)
    setattr(struct, name, placeholder.decode())  # the setter checks that the text fits
    address = int(struct.this)
    offset = ctypes.string_at(address, libc.malloc_usable_size(address)).find(placeholder)
    ctypes.memmove(address + offset, encoded, len(encoded))

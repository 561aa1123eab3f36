# ruff: noqa: N802  (the SPI and API method names are CTP's)
"""The live CTP market-data source of hft_md: an md front's snapshots -> the md journal.

Flow: ``Init`` -> ``OnFrontConnected`` -> ``ReqUserLogin`` -> ``OnRspUserLogin`` ->
``SubscribeMarketData`` (every instrument, in chunks) -> ``OnRtnDepthMarketData`` per snapshot.
The API reconnects by itself after ``OnFrontDisconnected`` and calls ``OnFrontConnected``
again; a front forgets the session with the connection, so every connection logs in and
subscribes everything again. The first disconnect of an outage is journaled as a FEED_GAP.

Threads: the API calls every ``On*`` callback from its own thread, one at a time, and that
thread is the only one that calls the recorder (a journal has one writer). ``start``,
``stop`` and the read-only properties are for any other thread; the state transitions are
serialized by a lock that the hot path never takes. ``Release`` waits for a callback in
progress (openctp's wrappers drop the GIL while they block), so once ``stop`` returns nothing
touches the recorder again; ``stop`` from inside a callback would wait for itself and is
refused.

Hot path: ``OnRtnDepthMarketData`` stamps the receive time, decodes the struct with a
RawStructReader built once at start-up, and hands the tuple to the recorder. Nothing else.

Logins: a refused login is retried with a backoff, unless the front refused the credentials
themselves (brokers lock an account after a few wrong passwords): then the adapter stays in
``error`` until it is restarted. The password is kept only in the login request struct, built
once at construction (openctp structs do not show their fields), and never appears in logs,
``repr`` or exceptions.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from time import time_ns
from typing import Any, Protocol

from openctp_ctp import mdapi

from hft.daemons.md.ctpstruct import RawStructReader
from hft.daemons.md.depth import DepthValues
from hft.daemons.md.recorder import Recorder
from hft.daemons.refdata.instruments import InstrumentTable, product_code
from hft.daemons.runtime.secrets import Secret

log = logging.getLogger(__name__)

SUBSCRIBE_CHUNK = 200
"""Instruments per SubscribeMarketData call."""
CREDENTIAL_ERRORS = frozenset({3, 4, 11, 12, 13})
"""Login ErrorIDs that mean the credentials are wrong (invalid login, user not active, user /
broker / investor not found): retrying could lock the account, so the adapter does not."""
MAX_LOGIN_RETRY_S = 60.0
DISCONNECT_REASONS = {
    0x1001: "network read failed",
    0x1002: "network write failed",
    0x2001: "heartbeat timeout",
    0x2002: "heartbeat send failed",
    0x2003: "bad packet received",
}
"""OnFrontDisconnected's nReason codes."""
_FRONT = re.compile(r"^(?:tcp|ssl)://[^\s:/]+:\d{1,5}$")
_PRODUCT_WILDCARD = re.compile(r"^([A-Za-z]+)\*")


class MdState(enum.StrEnum):
    DISCONNECTED = "disconnected"  # not started, stopped, or between connections (the API retries)
    CONNECTING = "connecting"  # started, no connection yet
    LOGGING_IN = "logging_in"  # connected, login sent
    SUBSCRIBED = "subscribed"  # logged in, subscriptions sent (stats.subscribed counts the acks)
    ERROR = "error"  # login refused or not sent; see the log and stats.errors


@dataclass
class CtpMdStats:
    """Counters the plugin exports as metrics."""

    logins: int = 0
    login_failures: int = 0
    disconnects: int = 0
    errors: int = 0
    """Error responses (login, subscription, OnRspError) and requests the API refused to send."""
    subscribed: int = 0
    """Instruments the front acknowledged on the current connection."""


class MdApi(Protocol):
    """The part of CThostFtdcMdApi the adapter calls (the real one, or CtpMdEmulator)."""

    def RegisterSpi(self, spi: Any) -> None: ...
    def RegisterFront(self, address: str) -> None: ...
    def Init(self) -> None: ...
    def ReqUserLogin(self, field: Any, request_id: int) -> int: ...
    def SubscribeMarketData(self, instrument_ids: list[str], count: int) -> int: ...
    def Release(self) -> None: ...


MdApiFactory = Callable[[str], MdApi]
"""Takes the flow directory (with its trailing separator), returns an md API."""


class CtpMarketData:
    """Subscribes ``instruments`` plus the known instruments matching ``patterns`` on a CTP md
    front and records every snapshot through ``recorder``."""

    def __init__(self, recorder: Recorder, fronts: Sequence[str], broker_id: str, user_id: str,
                 password: str | Secret, *, instruments: Sequence[str] = (),
                 patterns: Sequence[str] = (), known_instruments: Iterable[str] | None = None,
                 flow_dir: Path,
                 api_factory: MdApiFactory = mdapi.CThostFtdcMdApi.CreateFtdcMdApi,
                 subscribe_chunk: int = SUBSCRIBE_CHUNK, login_retry_s: float = 1.0) -> None:
        if not fronts:
            raise ValueError("no CTP md front given (e.g. tcp://180.168.146.187:10211)")
        for front in fronts:
            if not _FRONT.match(front):
                raise ValueError(f"CTP front {front!r} is not protocol://host:port "
                                 "(protocol tcp or ssl)")
        if subscribe_chunk < 1:
            raise ValueError(f"subscribe_chunk must be >= 1, not {subscribe_chunk}")
        self.recorder = recorder
        self.fronts = tuple(fronts)
        self.broker_id = broker_id
        self.user_id = user_id
        self._login_request = request_field(
            mdapi.CThostFtdcReqUserLoginField, BrokerID=broker_id, UserID=user_id,
            Password=password.reveal() if isinstance(password, Secret) else password)
        table = recorder.normalizer.instruments
        self.instruments = tuple(select_instruments(instruments, patterns, known_instruments, table))
        if not self.instruments:
            raise ValueError("no instruments to subscribe: give instrument ids or product patterns")
        self.flow_dir = flow_dir
        self.subscribe_chunk = subscribe_chunk
        self.login_retry_s = login_retry_s
        self.stats = CtpMdStats()
        self.trading_day = 0
        """TradingDay of the last successful login (YYYYMMDD), 0 before the first."""
        self._api_factory = api_factory
        self._api: MdApi | None = None
        self._started = False
        self._state = MdState.DISCONNECTED
        self._lock = threading.Lock()
        self._callback_thread = 0
        self._connection = 0  # bumped by every OnFrontConnected: tells a stale retry timer apart
        self._request_id = 0
        self._acked: set[str] = set()
        self._credentials_refused = False
        self._failures_in_row = 0
        self._retry: threading.Timer | None = None
        self._spi = _MdSpi(self, recorder.on_depth,
                           RawStructReader(mdapi.CThostFtdcDepthMarketDataField, DepthValues).read)

    @property
    def state(self) -> MdState:
        return self._state

    @property
    def feed(self) -> str:
        return self.recorder.feed

    def __repr__(self) -> str:
        return (f"CtpMarketData(feed={self.feed!r}, fronts={list(self.fronts)}, "
                f"broker_id={self.broker_id!r}, user_id={self.user_id!r}, "
                f"instruments={len(self.instruments)}, state={self._state.value})")

    def start(self) -> None:
        """Create the API and connect; everything after that happens in callbacks."""
        if self._started:
            raise RuntimeError(f"{self!r} was already started; make a new one to restart")
        self._started = True
        self.flow_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        api = self._api_factory(f"{self.flow_dir}{os.sep}")  # CTP prefixes file names with it
        api.RegisterSpi(self._spi)
        for front in self.fronts:
            api.RegisterFront(front)
        with self._lock:
            self._api = api
            self._state = MdState.CONNECTING
        log.info("CTP md connecting", extra={"feed": self.feed, "fronts": list(self.fronts),
                                             "instruments": len(self.instruments)})
        api.Init()

    def stop(self) -> None:
        """Release the API. Blocks until a callback in progress has returned: afterwards no
        callback touches the recorder."""
        if threading.get_ident() == self._callback_thread:
            raise RuntimeError("CtpMarketData.stop() called from a CTP callback: Release() "
                               "would wait for that very callback")
        with self._lock:
            self._started = True  # a stopped adapter does not start again
            api, self._api = self._api, None
            if self._retry is not None:
                self._retry.cancel()
            self._state = MdState.DISCONNECTED
        if api is None:
            return
        api.RegisterSpi(None)
        api.Release()
        log.info("CTP md API released", extra={"feed": self.feed})

    # --- callbacks (the API's thread) -----------------------------------------------------

    def _on_front_connected(self) -> None:
        with self._lock:
            self._callback_thread = threading.get_ident()
            if self._api is None:
                return
            self._connection += 1
            if self._credentials_refused:
                self._state = MdState.ERROR
                log.error("CTP md front connected; not logging in: the credentials were refused",
                          extra={"feed": self.feed})
                return
            log.info("CTP md front connected", extra={"feed": self.feed})
            self._login()

    def _on_front_disconnected(self, reason: int) -> None:
        with self._lock:
            self._callback_thread = threading.get_ident()
            if self._api is None:
                return
            self.stats.disconnects += 1
            self._acked.clear()
            self.stats.subscribed = 0
            if self._retry is not None:
                self._retry.cancel()
            first = self._state is not MdState.DISCONNECTED
            self._state = MdState.DISCONNECTED
            text = f"front disconnected: {reason:#x} {DISCONNECT_REASONS.get(reason, 'unknown')}"
            if first:  # the API retries about once a second: one gap and one warning per outage
                self.recorder.gap(text)
                log.warning("CTP md front disconnected; the API reconnects by itself",
                            extra={"feed": self.feed, "reason": text})
            else:
                log.debug("CTP md reconnect failed", extra={"feed": self.feed, "reason": text})

    def _on_rsp_user_login(self, login: Any, info: Any) -> None:
        with self._lock:
            self._callback_thread = threading.get_ident()
            if self._api is None:
                return
            error = _error(info)
            if error is not None:
                self._login_refused(*error)
                return
            self.stats.logins += 1
            self._failures_in_row = 0
            text = login.TradingDay if login is not None else ""
            day = int(text) if text.isdigit() else 0
            if day != self.trading_day:
                log.info("CTP trading day", extra={"feed": self.feed, "trading_day": day,
                                                   "previous_trading_day": self.trading_day})
                self.trading_day = day
            log.info("CTP md logged in", extra={"feed": self.feed, "trading_day": day})
            self._subscribe()

    def _on_rsp_sub_market_data(self, instrument: Any, info: Any) -> None:
        with self._lock:
            self._callback_thread = threading.get_ident()
            if self._api is None:
                return
            instrument_id = instrument.InstrumentID if instrument is not None else ""
            error = _error(info)
            if error is not None:
                self.stats.errors += 1
                log.error("CTP md subscription refused",
                          extra={"feed": self.feed, "instrument": instrument_id,
                                 "error_id": error[0], "error_msg": error[1]})
                return
            self._acked.add(instrument_id)
            self.stats.subscribed = len(self._acked)
            if self.stats.subscribed == len(self.instruments):
                log.info("CTP md subscribed", extra={"feed": self.feed,
                                                     "instruments": self.stats.subscribed})

    def _on_rsp_error(self, info: Any, request_id: int) -> None:
        with self._lock:
            self._callback_thread = threading.get_ident()
            error = _error(info)
            self.stats.errors += 1
            log.error("CTP md error response",
                      extra={"feed": self.feed, "request_id": request_id,
                             "error_id": error[0] if error else 0,
                             "error_msg": error[1] if error else ""})

    def _on_heartbeat_warning(self, lapse_s: int) -> None:
        log.warning("CTP md heartbeat late", extra={"feed": self.feed, "lapse_s": lapse_s})

    # --- requests (with the lock held) ----------------------------------------------------

    def _login(self) -> None:
        assert self._api is not None
        self._state = MdState.LOGGING_IN
        self._request_id += 1
        result = self._api.ReqUserLogin(self._login_request, self._request_id)
        if result != 0:
            self.stats.errors += 1
            self._state = MdState.ERROR
            delay = self._retry_login_later()
            log.error("CTP md login request not sent",
                      extra={"feed": self.feed, "result": result, "retry_in_s": delay})

    def _login_refused(self, error_id: int, message: str) -> None:
        self.stats.login_failures += 1
        self.stats.errors += 1
        self._state = MdState.ERROR
        extra: dict[str, Any] = {"feed": self.feed, "user_id": self.user_id,
                                 "broker_id": self.broker_id, "error_id": error_id,
                                 "error_msg": message}
        if error_id in CREDENTIAL_ERRORS:
            self._credentials_refused = True
            log.error("CTP md login refused: check the broker id, user id and password; "
                      "not retrying until restarted", extra=extra)
        else:
            extra["retry_in_s"] = self._retry_login_later()
            log.error("CTP md login failed; retrying", extra=extra)

    def _retry_login_later(self) -> float:
        delay = min(self.login_retry_s * 2.0 ** self._failures_in_row, MAX_LOGIN_RETRY_S)
        self._failures_in_row += 1
        if self._retry is not None:
            self._retry.cancel()
        self._retry = threading.Timer(delay, self._retry_login, args=(self._connection,))
        self._retry.daemon = True
        self._retry.start()
        return delay

    def _retry_login(self, connection: int) -> None:
        """Timer thread: log in again if still on the connection whose login failed."""
        with self._lock:
            if self._api is None or connection != self._connection or self._state is not MdState.ERROR:
                return
            log.info("CTP md retrying login", extra={"feed": self.feed})
            self._login()

    def _subscribe(self) -> None:
        assert self._api is not None
        self._acked.clear()
        self.stats.subscribed = 0
        ids = list(self.instruments)
        for start in range(0, len(ids), self.subscribe_chunk):
            chunk = ids[start:start + self.subscribe_chunk]
            result = self._api.SubscribeMarketData(chunk, len(chunk))
            if result != 0:
                self.stats.errors += 1
                log.error("CTP md subscribe request not sent",
                          extra={"feed": self.feed, "result": result, "first": chunk[0],
                                 "count": len(chunk)})
        self._state = MdState.SUBSCRIBED


class _MdSpi(mdapi.CThostFtdcMdSpi):  # type: ignore[misc]  # openctp-ctp is untyped
    """The SWIG director the API calls: the hot path, and the rest handed to the adapter."""

    def __init__(self, owner: CtpMarketData, on_depth: Callable[[DepthValues, int], bool],
                 read: Callable[[Any], DepthValues]) -> None:
        super().__init__()
        self._owner = owner
        self._on_depth = on_depth
        self._read = read

    def OnRtnDepthMarketData(self, depth: Any) -> None:
        received_ns = time_ns()
        self._on_depth(self._read(depth), received_ns)

    def OnFrontConnected(self) -> None:
        self._owner._on_front_connected()

    def OnFrontDisconnected(self, reason: int) -> None:
        self._owner._on_front_disconnected(reason)

    def OnHeartBeatWarning(self, lapse_s: int) -> None:
        self._owner._on_heartbeat_warning(lapse_s)

    def OnRspUserLogin(self, login: Any, info: Any, request_id: int, is_last: bool) -> None:
        self._owner._on_rsp_user_login(login, info)

    def OnRspSubMarketData(self, instrument: Any, info: Any, request_id: int, is_last: bool) -> None:
        self._owner._on_rsp_sub_market_data(instrument, info)

    def OnRspError(self, info: Any, request_id: int, is_last: bool) -> None:
        self._owner._on_rsp_error(info, request_id)


def request_field(struct_type: type[Any], **values: str) -> Any:
    """A CTP request struct with ``values`` set. A value too long for its char array raises
    ValueError naming the field, never the value (it may be a password)."""
    field = struct_type()
    for name, value in values.items():
        try:
            setattr(field, name, value)
        except TypeError:
            raise ValueError(f"{name} is too long for CTP's {struct_type.__name__}") from None
    return field


def _error(info: Any) -> tuple[int, str] | None:
    """(ErrorID, ErrorMsg) of a failed response; None for success (or no RspInfo at all).
    openctp-ctp's getter already decodes the front's GB18030 ErrorMsg to str."""
    if info is None or info.ErrorID == 0:
        return None
    return int(info.ErrorID), str(info.ErrorMsg)


def select_instruments(instruments: Iterable[str], patterns: Iterable[str],
                       known: Iterable[str] | None, table: InstrumentTable) -> list[str]:
    """The explicit ids, then the known ids each pattern matches, in order, without repeats;
    every one registered in ``table`` (which fails, naming it, for an unknown product).

    Patterns are globs on instrument ids, except that a product code followed by ``*``
    means that product only: ``p*`` is palm oil, not also ``pp2605`` and ``pg2605``.
    ``known`` defaults to the instruments registered in ``table`` (e.g. from
    ReqQryInstrument)."""
    patterns = list(patterns)
    universe = (list(known) if known is not None
                else [table.by_index(i).id for i in range(len(table))])
    if patterns and not universe:
        raise ValueError(f"product patterns {patterns} need the list of listed instruments "
                         "(from ReqQryInstrument); none is known")
    selected = dict.fromkeys(instruments)
    for pattern in patterns:
        product = _PRODUCT_WILDCARD.match(pattern)
        matches = [i for i in universe if fnmatchcase(i, pattern)
                   and (product is None or _product_or_none(i) == product.group(1))]
        if not matches:
            raise ValueError(f"pattern {pattern!r} matches none of the {len(universe)} known "
                             "instruments")
        selected.update(dict.fromkeys(matches))
    for instrument_id in selected:
        try:
            table.register(instrument_id)
        except (KeyError, ValueError) as exc:
            reason = exc.args[0] if exc.args else exc
            raise ValueError(f"cannot subscribe {instrument_id!r}: {reason}") from None
    return list(selected)


def _product_or_none(instrument_id: str) -> str | None:
    try:
        return product_code(instrument_id)
    except ValueError:
        return None

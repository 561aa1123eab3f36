"""The CTP feed, hft_md's live source: a CTP md front recorded into the md journal.

Credentials come from the plugin config or, better, the environment (CTP_MD_FRONT,
CTP_BROKER_ID, CTP_USER_ID, CTP_PASSWORD) or a 0600 ``credentials_file``: a config file is
easier to leak than either. With trader fronts (CTP_TD_FRONT, and CTP_APP_ID/CTP_AUTH_CODE where the broker
requires authentication) the instruments, multipliers and ticks come from ReqQryInstrument
at start; without, from the shipped product table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from openctp_ctp import mdapi, tdapi
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import BaseModel, ConfigDict, Field

from hft.daemons.md.ctp import CtpMarketData, MdState
from hft.daemons.md.ctp_instruments import query_instruments, register_listed
from hft.daemons.md.recorder import Recorder
from hft.daemons.refdata.instruments import InstrumentTable, ProductTable
from hft.daemons.runtime.credentials import with_credentials
from hft.daemons.runtime.plugins import Plugin, PluginContext
from hft.daemons.runtime.secrets import Secret

ENVIRONMENT = {"md_fronts": "CTP_MD_FRONT", "td_fronts": "CTP_TD_FRONT",
               "broker_id": "CTP_BROKER_ID", "user_id": "CTP_USER_ID",
               "password": "CTP_PASSWORD", "app_id": "CTP_APP_ID", "auth_code": "CTP_AUTH_CODE"}


class CtpFeedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    md_fronts: list[str] = []
    td_fronts: list[str] = []
    broker_id: str = ""
    user_id: str = ""
    password: Secret = Secret("")
    app_id: str = ""
    auth_code: Secret = Secret("")
    credentials_file: Path | None = None
    """JSON with any of the keys above, mode 0600 (checked)."""
    instruments: list[str] = []
    """Instrument ids to subscribe."""
    patterns: list[str] = []
    """Product patterns such as "rb*" (product rb) or "IF26*" (ids), matched against the
    instruments the trader front lists (or the product table's registered instruments)."""
    journal: str = Field(default="md-ctp", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    snapshot: bool = True
    stale_after_s: float | None = Field(default=30.0, gt=0)
    drop_stale: bool = False


class CtpFeed(Plugin):
    """hft_md source plugin: a live CTP md front."""

    Config = CtpFeedConfig
    md_api_factory: ClassVar[Any] = mdapi.CThostFtdcMdApi.CreateFtdcMdApi
    td_api_factory: ClassVar[Any] = tdapi.CThostFtdcTraderApi.CreateFtdcTraderApi

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        self.settings = _with_credentials(ctx.config)

    def start(self) -> None:
        settings, host = self.settings, self.ctx.host
        products = ProductTable.load()
        table = InstrumentTable(products)
        known = None
        if settings.td_fronts:
            listed = query_instruments(
                settings.td_fronts, settings.broker_id, settings.user_id,
                settings.password, products=products,
                flow_dir=host.run_dir / "ctp" / "td", app_id=settings.app_id,
                auth_code=settings.auth_code,
                api_factory=type(self).td_api_factory)
            known = [instrument.id for instrument in register_listed(table, listed)]
        self.recorder = Recorder.open(
            "ctp", host.journal_dir, settings.journal, table,
            snapshot_path=host.run_dir / f"{settings.journal}.snap" if settings.snapshot else None,
            stale_after_s=settings.stale_after_s, drop_stale=settings.drop_stale)
        try:
            self.adapter = CtpMarketData(
                self.recorder, settings.md_fronts, settings.broker_id, settings.user_id,
                settings.password, instruments=settings.instruments,
                patterns=settings.patterns, known_instruments=known,
                flow_dir=host.run_dir / "ctp" / "md", api_factory=type(self).md_api_factory)
            self.adapter.start()
        except BaseException:
            self.recorder.close()
            raise

    def stop(self) -> None:
        self.adapter.stop()  # no callback touches the recorder once this returns
        self.recorder.gap("ctp feed stopped")
        self.recorder.close()

    def metrics(self) -> Iterable[Metric]:
        yield from self.recorder.metrics()
        yield from _adapter_metrics(self.adapter)


def _with_credentials(config: CtpFeedConfig) -> CtpFeedConfig:
    """The config with what it leaves empty from the environment, then the credentials
    file; it must name something to subscribe."""
    settings = with_credentials(config, ENVIRONMENT, file=config.credentials_file,
                                needed=("md_fronts", "broker_id", "user_id", "password"),
                                who="CTP feed")
    if not settings.instruments and not settings.patterns:
        raise ValueError("the CTP feed needs instruments or patterns to subscribe")
    return settings


def _adapter_metrics(adapter: CtpMarketData) -> Iterator[Metric]:
    state = GaugeMetricFamily("hft_md_ctp_state", "1 for the CTP md adapter's current state",
                              labels=["state"])
    for candidate in MdState:
        state.add_metric([candidate.value], int(adapter.state is candidate))
    yield state
    stats = adapter.stats
    for name, help_text, value in (
        ("hft_md_ctp_logins", "Successful logins to the md front", stats.logins),
        ("hft_md_ctp_login_failures", "Refused logins", stats.login_failures),
        ("hft_md_ctp_disconnects", "Front disconnections", stats.disconnects),
        ("hft_md_ctp_errors", "Error responses from the front", stats.errors),
    ):
        yield CounterMetricFamily(name, help_text, value=value)
    yield GaugeMetricFamily("hft_md_ctp_subscribed", "Instruments the front acknowledged",
                            value=stats.subscribed)

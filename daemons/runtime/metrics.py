"""Prometheus /metrics for one daemon, on 127.0.0.1 only, from its own registry.

Nothing on the hot path touches a prometheus_client object: the bus and the main loop keep
plain integers (``bus.published``, ``host.iterations`` ...) and :class:`HostCollector` turns
them into metric families when Prometheus scrapes. prometheus-client's ProcessCollector adds
the process's memory, CPU time and open descriptors (``process_*``), its GCCollector the
cyclic garbage collector's runs by generation (``python_gc_*``). The HTTP side (bounds,
TLS, basic auth) is :mod:`hft.daemons.runtime.metrics_http`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, GCCollector, ProcessCollector, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

import hft
from hft.daemons.runtime.events import EventType
from hft.daemons.runtime.metrics_http import MetricsHttpServer, basic_auth, tls_context
from hft.daemons.runtime.plugins import PluginState
from hft.daemons.runtime.token import read_token

if TYPE_CHECKING:
    from hft.daemons.runtime.host import DaemonHost

log = logging.getLogger(__name__)


class HostCollector:
    """Reads a DaemonHost's counters at scrape time (from the HTTP server's thread)."""

    def __init__(self, host: DaemonHost) -> None:
        self._host = host

    def collect(self) -> Iterator[Metric]:
        host = self._host
        info = GaugeMetricFamily("hft_daemon_info", "The daemon and the hft version it runs",
                                 labels=["daemon", "version"])
        info.add_metric([host.name, hft.__version__], 1)
        yield info

        published = CounterMetricFamily("hft_bus_events_published",
                                        "Events published on the in-process bus",
                                        labels=["type"])
        counts = list(host.bus.published)
        for event_type in EventType:
            published.add_metric([event_type.name], counts[event_type])
        yield published

        handler_errors = CounterMetricFamily("hft_bus_handler_errors",
                                             "Exceptions raised by bus handlers (isolated)",
                                             labels=["type", "handler"])
        for (type_value, handler), count in list(host.bus.handler_errors.items()):
            handler_errors.add_metric([EventType(type_value).name, handler], count)
        yield handler_errors

        callback_errors = CounterMetricFamily("hft_loop_callback_errors",
                                              "Exceptions raised by pollers and timers (isolated)",
                                              labels=["kind", "callback"])
        for (kind, callback), count in list(host.callback_errors.items()):
            callback_errors.add_metric([kind, callback], count)
        yield callback_errors

        plugin_state = GaugeMetricFamily("hft_plugin_state",
                                         "1 for the state each plugin is in, 0 for the others",
                                         labels=["plugin", "state"])
        for entry in host.plugins:
            health = entry.health
            for state in PluginState:
                plugin_state.add_metric([entry.name, state.value], int(health is state))
        yield plugin_state

        yield from _merged(self._plugin_families())

        yield CounterMetricFamily("hft_main_loop_iterations", "Main-loop iterations",
                                  value=host.iterations)
        yield GaugeMetricFamily("hft_uptime_seconds", "Seconds since the daemon started",
                                value=host.uptime_s())
        yield GaugeMetricFamily("hft_heartbeat_age_seconds",
                                "Seconds since the main loop last wrote its heartbeat",
                                value=host.heartbeat_age_s())


    def _plugin_families(self) -> Iterator[Metric]:
        for entry in self._host.plugins:
            if entry.instance is not None and entry.state is PluginState.RUNNING:
                try:
                    yield from list(entry.instance.metrics())
                except BaseException:  # a plugin's broken metrics must not break the scrape
                    log.exception("plugin metrics failed", extra={"plugin": entry.name})


def _merged(families: Iterable[Metric]) -> Iterator[Metric]:
    """One family per name: plugins of one kind (two feeds, two factor hosts) each report the
    same families with their own labels, and OpenMetrics refuses a scrape that repeats one."""
    by_name: dict[str, Metric] = {}
    for family in families:
        known = by_name.get(family.name)
        if known is None:
            by_name[family.name] = family
        else:
            known.samples.extend(family.samples)
    return iter(by_name.values())


class MetricsServer:
    """The /metrics endpoint of one host: its collectors, served as its config says (plain
    HTTP, TLS, basic auth); raises OSError or TokenError for unusable files."""

    def __init__(self, host: DaemonHost) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(HostCollector(host))
        if host.extension is not None:
            self.registry.register(host.extension)
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        config, suite = host.config, host.suite
        app = make_wsgi_app(self.registry)
        if config.metrics_auth is not None:
            password = read_token(suite.below_home(config.metrics_auth.password_file),
                                  what="metrics password file")
            app = basic_auth(app, config.metrics_auth.username, password.decode())
        tls = None
        if config.metrics_tls is not None:
            tls = tls_context(config.metrics_tls.model_copy(update={
                key: suite.below_home(value) for key, value in config.metrics_tls
                if isinstance(value, Path)}))
        self._http = MetricsHttpServer(app, tls)

    @property
    def scheme(self) -> str:
        return self._http.scheme

    def start(self, port: int) -> int:
        """Serve on 127.0.0.1:``port`` (0 = any free port); returns the bound port."""
        return self._http.start(port)

    def stop(self) -> None:
        self._http.stop()

"""The suite configuration: one TOML file describes every daemon of the suite.

::

    [paths]
    home = "~/.hft"              # HFT_HOME overrides; run/, journal/, log/ live below it

    [logging]
    level = "INFO"

    [daemons.engine]
    enabled = true
    metrics_port = 9102          # on 127.0.0.1; 0 = any free port
    # grpc_socket = "run/engine.sock"   (default <home>/run/engine.sock)
    heartbeat_interval_s = 1.0
    wait_mode = "block"

    [daemons.engine.plugins.strategy]
    spec = "my_strategies.trend:Trend"
    config = { instrument = "IF2101" }

Validation is strict (no unknown keys, no silent type coercion) so a typo is refused with
the key path, the reason and the file name instead of being ignored. Relative paths in a
file are relative to the file's directory (``paths.home``) or to ``home`` (``grpc_socket``).
"""

from __future__ import annotations

import os
import re
import reprlib
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hft.daemons.runtime.bus import DEFAULT_FAILING_AFTER
from hft.daemons.runtime.secrets import Secret, is_secret_key
from hft.daemons.runtime.waitmode import WaitMode

DAEMON_NAMES = ("hft_md", "engine", "risk", "monitor")
"""The supervised daemons, in the order the watchdog starts them (each waits for the one
before it to be SERVING)."""
WATCHDOG = "watchdog"
"""The supervisor's own name: its socket, heartbeat, log and ``[watchdog]`` config table."""
DEFAULT_METRICS_PORTS = dict(zip(DAEMON_NAMES, range(9101, 9105), strict=True))
WATCHDOG_METRICS_PORT = 9100
HOME_ENV = "HFT_HOME"
PLUGIN_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
MAX_UNIX_SOCKET_PATH = 107
"""sun_path holds 108 bytes including the terminating NUL."""

CONTROL_TCP_PATTERN = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$"

PluginName = Annotated[str, StringConstraints(pattern=PLUGIN_NAME_PATTERN)]
LoosePath = Annotated[Path, Field(strict=False)]
"""TOML has no path type: accept a string where a path is expected."""


class ConfigError(Exception):
    """A config file that cannot be used; ``problems`` holds (key path, reason) pairs."""

    def __init__(self, source: Path | str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"  {key}: {reason}" if key else f"  {reason}" for key, reason in problems]
        super().__init__(f"invalid config {source}:\n" + "\n".join(lines))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PathsConfig(_Strict):
    home: LoosePath = Path("~/.hft")

    @field_validator("home")
    @classmethod
    def _absolute(cls, home: Path, info: ValidationInfo) -> Path:
        base = Path((info.context or {}).get("base_dir", "."))
        return (base / home.expanduser()).absolute()


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    stderr: bool = True
    """JSON lines to stderr (``hftctl start`` sends a daemon's stderr to <home>/log/NAME.log)."""
    file: bool = False
    """JSON lines to <home>/log/NAME.jsonl as well."""


class PluginConfig(_Strict):
    spec: Annotated[str, StringConstraints(min_length=1)]
    """Entry point name, ``module:Class`` or a file path (see hft.daemons.runtime.plugins)."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Handed to the plugin (validated by its ``Config`` model if it has one)."""


class MetricsTlsConfig(_Strict):
    """/metrics over TLS (``[daemons.NAME.metrics_tls]``); relative paths are below home."""

    certfile: LoosePath
    """The server's certificate chain (PEM)."""
    keyfile: LoosePath
    """Its private key (PEM), readable by the daemon's user only."""
    client_cafile: LoosePath | None = None
    """CA certificates (PEM) that sign the client certificates Prometheus presents."""
    client_auth_required: bool = False
    """Refuse clients without a certificate signed by ``client_cafile``."""

    @model_validator(mode="after")
    def _ca_for_client_auth(self) -> MetricsTlsConfig:
        if self.client_auth_required and self.client_cafile is None:
            raise ValueError("client_auth_required needs client_cafile: the CA that signs "
                             "the client certificates")
        return self


class MetricsAuthConfig(_Strict):
    """HTTP basic auth on /metrics (``[daemons.NAME.metrics_auth]``)."""

    username: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    password_file: LoosePath
    """File holding the password (16+ printable characters, mode 0600 or stricter);
    relative paths are below home."""


class DaemonConfig(_Strict):
    enabled: bool = True
    metrics_port: int = Field(ge=0, le=65535)
    """Prometheus /metrics on 127.0.0.1; 0 picks a free port (see Control.Status)."""
    grpc_socket: LoosePath | None = None
    """Control socket; default <home>/run/NAME.sock, relative paths are below home."""
    control_tcp: Annotated[str, StringConstraints(pattern=CONTROL_TCP_PATTERN)] | None = None
    """Also serve the control plane on this TCP ``HOST:PORT`` (``[::1]:PORT`` for IPv6),
    every call checked against the token in ``control_token_file``. Plain TCP, no TLS: bind
    it to a private network or tunnel it."""
    control_token_file: LoosePath | None = None
    """File holding the TCP listener's token (16+ printable characters, mode 0600 or
    stricter); relative paths are below home."""
    metrics_tls: MetricsTlsConfig | None = None
    """Serve /metrics over TLS, optionally demanding client certificates."""
    metrics_auth: MetricsAuthConfig | None = None
    """Demand HTTP basic auth on /metrics."""
    heartbeat_interval_s: float = Field(default=1.0, gt=0, le=60)
    wait_mode: Annotated[WaitMode, Field(strict=False)] = WaitMode.BLOCK
    spin_us: int = Field(default=50, ge=0, le=1_000_000)
    """How long the loop keeps polling after the last work before it yields or blocks."""
    yield_us: int = Field(default=2000, ge=0, le=1_000_000)
    """Block mode: how long after the last work the loop yields before it sleeps."""
    idle_block_s: float = Field(default=0.0005, gt=0, le=1)
    """Longest block while pollers are registered: the idle pollers' latency bound."""
    failing_after: int = Field(default=DEFAULT_FAILING_AFTER, ge=1, le=1_000_000)
    """A bus handler that raised on this many calls in a row makes its plugin DEGRADED."""
    stop_timeout_s: float = Field(default=5.0, gt=0, le=600)
    """How long a stop may take; past it the daemon exits with status 3 (a plugin is stuck)."""
    cpu_affinity: list[int] | None = Field(default=None, min_length=1)
    """The CPUs the daemon's threads may run on (``os.sched_setaffinity`` at start), e.g.
    ``[1]`` to give a busy daemon a core of its own; unset: wherever the kernel puts it."""
    plugins: dict[PluginName, PluginConfig] = Field(default_factory=dict)

    @field_validator("cpu_affinity")
    @classmethod
    def _cpus_of_this_machine(cls, cpus: list[int] | None) -> list[int] | None:
        if cpus is None:
            return None
        count = os.cpu_count() or 1
        unknown = sorted({cpu for cpu in cpus if not 0 <= cpu < count})
        if unknown:
            raise ValueError(f"CPU {', '.join(map(str, unknown))} is not one of this machine's "
                             f"{count} CPUs (0 to {count - 1})")
        if len(set(cpus)) != len(cpus):
            raise ValueError("a CPU is listed twice")
        return cpus

    @field_validator("grpc_socket", "control_token_file")
    @classmethod
    def _expand_user(cls, path: Path | None) -> Path | None:
        return None if path is None else path.expanduser()

    @field_validator("control_tcp")
    @classmethod
    def _port_in_range(cls, address: str | None) -> str | None:
        if address is not None and int(address.rpartition(":")[2]) > 65535:
            raise ValueError(f"port of {address!r} is above 65535")
        return address

    @model_validator(mode="after")
    def _token_with_tcp(self) -> DaemonConfig:
        if self.control_tcp is not None and self.control_token_file is None:
            raise ValueError("control_tcp needs control_token_file: the TCP listener checks "
                             "every call against that token")
        return self


_WEBHOOK_URL = re.compile(r"https?://[^\s/?#]+(?:[/?#]\S*)?")
_WEBHOOK_URL_MAX = 2048
WebhookKind = Literal["generic", "alertmanager", "dingtalk", "feishu", "wecom"]
AlertLevelName = Literal["info", "warning", "critical"]


class WebhookConfig(_Strict):
    """One ``[[watchdog.webhooks]]`` table: where alerts go and in which format."""

    kind: WebhookKind
    url: Secret = Field(strict=False)
    """http(s) only; a Secret because robot urls carry their access token (``***`` in reprs,
    masked in logs, never echoed by a config error). alertmanager: the base url
    (``http://am:9093``, with any route prefix) or the full ``.../api/v2/alerts`` path."""
    secret: Secret | None = Field(default=None, strict=False)
    """DingTalk and Feishu signing secret (the robot's "sign" security setting)."""
    min_level: AlertLevelName = "warning"
    """Alerts below this level are not sent to this webhook."""
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    retries: int = Field(default=3, ge=0, le=20)
    """Further attempts after a failed one, with exponential backoff."""
    max_per_minute: int = Field(default=20, ge=1, le=10_000)
    """Rate limit; alerts beyond it are dropped and counted, never queued without bound."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: Secret) -> Secret:
        if len(url.reveal()) > _WEBHOOK_URL_MAX or not _WEBHOOK_URL.fullmatch(url.reveal()):
            raise ValueError("must be an http:// or https:// url with a host, no spaces, at most "
                             "2048 characters")
        return url

    @model_validator(mode="after")
    def _secret_where_signed(self) -> WebhookConfig:
        if self.secret is not None and self.kind not in ("dingtalk", "feishu"):
            raise ValueError(f"secret is for dingtalk and feishu webhooks, not {self.kind}")
        return self


class WatchdogConfig(DaemonConfig):
    """``[watchdog]``: the supervisor is a daemon too (control socket, /metrics, heartbeat),
    plus how it checks, restarts and alerts."""

    metrics_port: int = Field(default=WATCHDOG_METRICS_PORT, ge=0, le=65535)
    check_interval_s: float = Field(default=0.5, gt=0, le=60)
    """How often every daemon is checked (psutil, gRPC health, heartbeat)."""
    health_timeout_s: float = Field(default=1.0, gt=0, le=60)
    """Deadline of one gRPC health check."""
    heartbeat_timeout_s: float = Field(default=5.0, gt=0, le=3600)
    """A heartbeat older than this means the daemon's main loop hangs."""
    unhealthy_after: int = Field(default=3, ge=1, le=1000)
    """Consecutive failed checks (health or heartbeat) before a live daemon is restarted."""
    start_timeout_s: float = Field(default=15.0, gt=0, le=600)
    """How long a daemon may take from spawn to SERVING."""
    kill_timeout_s: float = Field(default=10.0, gt=0, le=600)
    """Graceful stop: SIGTERM, then SIGKILL after this long."""
    stop_timeout_s: float = Field(default=30.0, gt=0, le=600)
    """How long the watchdog's own stop may take; it stops every daemon first, so it must be
    longer than kill_timeout_s."""
    backoff_initial_s: float = Field(default=0.5, ge=0, le=600)
    backoff_max_s: float = Field(default=30.0, ge=0, le=3600)
    start_limit_burst: int = Field(default=5, ge=1, le=1000)
    start_limit_interval_s: float = Field(default=60.0, gt=0, le=86400)
    """``start_limit_burst`` failures within this window put the daemon in FATAL."""
    max_rss_mb: dict[str, int] = Field(default_factory=dict)
    """Per daemon name: resident memory above this restarts it (with an alert)."""
    max_cpu_percent: dict[str, float] = Field(default_factory=dict)
    """Per daemon name: CPU above this for ``unhealthy_after`` checks raises a warning."""
    alert_journals: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]] = (
        Field(default_factory=lambda: ["risk"]))
    """Journals whose ALERT records (LOST orders, position mismatch, kill switch) are sent."""
    webhooks: list[WebhookConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _stop_outlasts_kill(self) -> WatchdogConfig:
        if self.stop_timeout_s <= self.kill_timeout_s:
            raise ValueError(f"stop_timeout_s ({self.stop_timeout_s:g}) must be longer than "
                             f"kill_timeout_s ({self.kill_timeout_s:g}): the watchdog stops "
                             "every daemon before it exits")
        return self

    @field_validator("max_rss_mb", "max_cpu_percent")
    @classmethod
    def _known_daemons(cls, limits: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(limits) - set(DAEMON_NAMES))
        if unknown:
            raise ValueError(f"unknown daemon {', '.join(unknown)}; expected one of "
                             f"{', '.join(DAEMON_NAMES)}")
        if any(value <= 0 for value in limits.values()):
            raise ValueError("limits must be above 0")
        return limits


class DaemonsConfig(_Strict):
    hft_md: DaemonConfig
    engine: DaemonConfig
    risk: DaemonConfig
    monitor: DaemonConfig

    @model_validator(mode="before")
    @classmethod
    def _default_ports(cls, data: Any) -> Any:
        """Each daemon has its own default metrics port, so fill it in by name."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, port in DEFAULT_METRICS_PORTS.items():
            table = data.get(name, {})
            if isinstance(table, dict) and "metrics_port" not in table:
                data[name] = {**table, "metrics_port": port}
        return data


class SuiteConfig(_Strict):
    paths: PathsConfig = Field(default_factory=PathsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    daemons: DaemonsConfig = Field(default_factory=lambda: DaemonsConfig.model_validate({}))
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig)
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file this config was loaded from (the built-in default's path if none given)."""
        return self._source

    @property
    def home(self) -> Path:
        return self.paths.home

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "log"

    @property
    def journal_dir(self) -> Path:
        return self.home / "journal"

    def daemon(self, name: str) -> DaemonConfig:
        """A supervised daemon's table, or ``[watchdog]`` for the supervisor itself."""
        if name == WATCHDOG:
            return self.watchdog
        if name not in DAEMON_NAMES:
            raise KeyError(f"unknown daemon {name!r}; expected one of {', '.join(DAEMON_NAMES)}")
        config: DaemonConfig = getattr(self.daemons, name)
        return config

    def enabled_daemons(self) -> list[str]:
        return [name for name in DAEMON_NAMES if self.daemon(name).enabled]

    def socket_path(self, name: str) -> Path:
        configured = self.daemon(name).grpc_socket
        return self.run_dir / f"{name}.sock" if configured is None else self.home / configured

    def below_home(self, path: Path) -> Path:
        """A configured path: relative ones are below home, ``~`` is the user's home."""
        return self.home / path.expanduser()

    def token_path(self, name: str) -> Path | None:
        """The daemon's control token file, None when it has no TCP listener."""
        configured = self.daemon(name).control_token_file
        return None if configured is None else self.home / configured

    def heartbeat_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.hb"

    def output_log_path(self, name: str) -> Path:
        """Where ``hftctl start`` sends the daemon's stdout and stderr."""
        return self.log_dir / f"{name}.log"

    def json_log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.jsonl"


def default_config_path() -> Path:
    """The built-in config shipped with the package (daemons/default.toml)."""
    return Path(str(resources.files("hft.daemons") / "default.toml"))


def load_config(path: Path | None = None) -> SuiteConfig:
    """Read and validate the suite config (the built-in default when ``path`` is None).

    ``HFT_HOME`` in the environment overrides ``paths.home``. Raises ConfigError naming the
    file and, per problem, the key path and the reason.
    """
    source = default_config_path() if path is None else path
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(source, [("", "the file does not exist")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [("", f"cannot read the file: {exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [("", f"TOML syntax error: {exc}")]) from None
    if home := os.environ.get(HOME_ENV):
        paths = raw.setdefault("paths", {})
        if isinstance(paths, dict):
            paths["home"] = str(Path(home).expanduser().absolute())
    try:
        config = SuiteConfig.model_validate(raw, context={"base_dir": source.parent})
    except ValidationError as exc:
        raise ConfigError(source, [_explain(error) for error in exc.errors()]) from None
    problems = list(_cross_check(config))
    if problems:
        raise ConfigError(source, problems)
    config._source = source.absolute()
    return config


def _cross_check(config: SuiteConfig) -> Iterator[tuple[str, str]]:
    """What no single field can check: shared ports and sockets, socket path length, a
    heartbeat the watchdog would find stale between two beats."""
    for name in config.enabled_daemons():
        interval = config.daemon(name).heartbeat_interval_s
        if interval >= config.watchdog.heartbeat_timeout_s:
            yield ("watchdog.heartbeat_timeout_s",
                   f"{config.watchdog.heartbeat_timeout_s:g}s must be longer than "
                   f"daemons.{name}.heartbeat_interval_s ({interval:g}s): the watchdog would "
                   f"restart a healthy {name}")
    ports: dict[int, str] = {}
    sockets: dict[Path, str] = {}
    for name in (*DAEMON_NAMES, WATCHDOG):
        table = WATCHDOG if name == WATCHDOG else f"daemons.{name}"
        daemon = config.daemon(name)
        port = daemon.metrics_port
        if port and port in ports:
            yield f"{table}.metrics_port", f"port {port} is also {ports[port]}'s"
        ports.setdefault(port, table)
        socket = config.socket_path(name)
        if socket in sockets:
            yield f"{table}.grpc_socket", f"{socket} is also {sockets[socket]}'s"
        sockets.setdefault(socket, table)
        if len(os.fsencode(socket)) > MAX_UNIX_SOCKET_PATH:
            yield (f"{table}.grpc_socket",
                   f"socket path {socket} is {len(os.fsencode(socket))} bytes, Unix sockets "
                   f"allow {MAX_UNIX_SOCKET_PATH}; shorten paths.home or set grpc_socket")


def _explain(error: Any) -> tuple[str, str]:
    """One pydantic error as (dotted key path, reason with the offending value)."""
    loc: tuple[int | str, ...] = error["loc"]
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return _key_path(loc), "unknown key" + (f"; expected one of: {', '.join(allowed)}"
                                                if allowed else "")
    reason = error["msg"]
    # nor a table's or a list's value: it may hold secrets under any key
    if error["type"] != "missing" and not isinstance(error["input"], dict | list) \
            and not _hides_input(loc):
        reason += f" (got {reprlib.repr(error['input'])})"
    return _key_path(loc), reason


def _hides_input(loc: tuple[int | str, ...]) -> bool:
    """Secret-looking keys and webhook urls (they carry access tokens) are never echoed."""
    return any(is_secret_key(str(part)) for part in loc) or loc[-1:] == ("url",)


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The field names of the model found at ``loc`` (dict levels match any key)."""
    node: Any = SuiteConfig
    for part in loc:
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(str(part))
            if field is None:
                return []
            node = field.annotation
        else:
            node = getattr(node, "__args__", (None,))[-1]
    return list(node.model_fields) if isinstance(node, type) and issubclass(node, BaseModel) else []


def _key_path(loc: tuple[int | str, ...]) -> str:
    """``('daemons', 'engine', 'plugins', 'a b')`` -> ``daemons.engine.plugins."a b"``."""
    parts: list[str] = []
    for part in loc:
        if part == "[key]":
            parts[-1] += " (the key itself)"
            continue
        text = str(part)
        parts.append(text if text.replace("_", "").replace("-", "").isalnum() else f'"{text}"')
    return ".".join(parts)

"""``hftctl``: start, stop, inspect and manage the hft daemons from one command."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from hft.ctl import data, launcher, protogen, riskcheck
from hft.ctl.client import ControlError, DaemonClient
from hft.ctl.report import format_bench, format_table, plugin_dict, suite_status
from hft.daemons.runtime.config import (
    CONTROL_TCP_PATTERN,
    DAEMON_NAMES,
    HOME_ENV,
    ConfigError,
    SuiteConfig,
    load_config,
)
from hft.daemons.runtime.token import TokenError, read_token
from hft.protos import control_pb2

F = TypeVar("F", bound=Callable[..., Any])
DAEMON = click.Choice(DAEMON_NAMES)


def config_option(command: F) -> F:
    """``--config FILE`` (or $HFT_CONFIG): the suite config; the built-in default if unset."""
    return click.option(
        "--config", "config_file", metavar="FILE", envvar="HFT_CONFIG",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Suite config (TOML) [env HFT_CONFIG; default: the built-in daemons/default.toml].",
    )(command)


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True,
                        help="One JSON object per line instead of a table.")(command)


def _load(config_file: Path | None) -> SuiteConfig:
    try:
        return load_config(config_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _names(suite: SuiteConfig, names: tuple[str, ...]) -> list[str]:
    """The named daemons, or every enabled one; a disabled daemon cannot be named."""
    if not names:
        return suite.enabled_daemons()
    disabled = [name for name in names if not suite.daemon(name).enabled]
    if disabled:
        raise click.UsageError(f"{', '.join(disabled)} disabled in {suite.source} "
                               "(daemons.NAME.enabled = false)")
    return list(dict.fromkeys(names))


def _print_rows(rows: Sequence[Mapping[str, Any]], as_json: bool) -> None:
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
    elif rows:
        click.echo(format_table(rows))


def _report(outcomes: Iterable[launcher.Outcome]) -> None:
    """Print each daemon's outcome; exit 1 if any failed."""
    failed = False
    for outcome in outcomes:
        click.echo(f"{outcome.name}: {outcome.message}", err=not outcome.ok)
        failed |= not outcome.ok
    if failed:
        raise SystemExit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             epilog=f"The home directory (sockets, heartbeats, logs) is paths.home from the "
                    f"config; ${HOME_ENV} overrides it.")
@click.version_option(package_name="hft")
def main() -> None:
    """Control the hft daemon suite: hft_md, engine, risk and monitor."""


@main.command()
@config_option
@click.option("--timeout", default=15.0, show_default=True, metavar="SECONDS",
              help="How long each daemon may take to report SERVING.")
@click.argument("names", nargs=-1, type=DAEMON)
def start(config_file: Path | None, timeout: float, names: tuple[str, ...]) -> None:
    """Start daemons in the background (default: every enabled one).

    Each runs detached with its output in <home>/log/NAME.log; a daemon counts as started
    once its gRPC health is SERVING. One that is already running is left alone. Exits 1 if
    any daemon failed to start, after showing the end of its log.
    """
    suite = _load(config_file)
    outcomes: list[launcher.Outcome] = []
    spawned = []
    for name in _names(suite, names):
        pid = launcher.running_pid(suite.socket_path(name))
        if pid is None:
            spawned.append((name, launcher.spawn(suite, name, config_file)))
        else:
            outcomes.append(launcher.Outcome(name, True, f"already running (pid {pid})"))
    outcomes += [launcher.wait_serving(suite, name, process, timeout)
                 for name, process in spawned]
    _report(outcomes)


@main.command()
@config_option
@click.option("--timeout", default=15.0, show_default=True, metavar="SECONDS",
              help="How long each daemon may take to exit after Control.Stop.")
@click.argument("names", nargs=-1, type=DAEMON)
def stop(config_file: Path | None, timeout: float, names: tuple[str, ...]) -> None:
    """Stop daemons gracefully (default: all) and wait for their processes to exit.

    A daemon that is not running is reported, not an error. Exits 1 if one does not exit
    in time.
    """
    suite = _load(config_file)
    _report(launcher.stop(suite, names or DAEMON_NAMES, timeout))


@main.command()
@config_option
@json_option
def status(config_file: Path | None, as_json: bool) -> None:
    """Show every daemon: running or not, pid, state, uptime, heartbeat age, plugins.

    States: starting, running, stopping; stopped (not running); unresponsive (its process
    lives but gRPC does not answer); dead (it exited without a clean stop).
    """
    suite = _load(config_file)
    rows = suite_status(suite)
    if not as_json:
        for row in rows:
            del row["socket"]
    _print_rows(rows, as_json)


@dataclass(frozen=True)
class _Remote:
    """Where ``plugins --connect`` sends its calls, and the token they carry."""

    address: str
    token: bytes

    def __repr__(self) -> str:  # never show the token
        return f"_Remote({self.address!r})"


@main.group()
@click.option("--connect", "address", metavar="HOST:PORT",
              help="Reach the daemon's TCP control listener (daemons.NAME.control_tcp) "
                   "instead of its Unix socket; needs --token-file.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="The daemon's control_token_file (readable by its owner only).")
@click.pass_context
def plugins(ctx: click.Context, address: str | None, token_file: Path | None) -> None:
    """List, load, unload, reload and send commands to the plugins of a running daemon."""
    if (address is None) != (token_file is None):
        raise click.UsageError("--connect and --token-file go together")
    if address is None or token_file is None:
        return
    if not re.match(CONTROL_TCP_PATTERN, address):
        raise click.BadParameter(f"{address!r} is not HOST:PORT", param_hint="--connect")
    try:
        ctx.obj = _Remote(address, read_token(token_file))
    except TokenError as exc:
        raise click.ClickException(str(exc)) from None


def _client(suite: SuiteConfig, daemon: str) -> DaemonClient:
    """DAEMON's control plane: the TCP listener given to ``plugins --connect``, else its
    Unix socket."""
    remote = click.get_current_context().find_object(_Remote)
    if remote is not None:
        return DaemonClient(remote.address, token=remote.token)
    return DaemonClient(suite.socket_path(daemon))


def _client_call(suite: SuiteConfig, daemon: str,
                 call: Callable[[DaemonClient], control_pb2.PluginInfo]) -> None:
    """Run one plugin command and print the plugin; exit 1 if it failed or was refused."""
    try:
        with _client(suite, daemon) as client:
            info = call(client)
    except ControlError as exc:
        raise click.ClickException(f"{daemon}: {exc.code}: {exc.details}") from None
    plugin = plugin_dict(info)
    line = f"{daemon}: plugin {plugin['name']} {plugin['state']}"
    if plugin["error"]:
        raise click.ClickException(f"{line}: {plugin['error']}")
    click.echo(line)


@plugins.command("list")
@config_option
@json_option
@click.argument("daemon", type=DAEMON)
def plugins_list(config_file: Path | None, as_json: bool, daemon: str) -> None:
    """List DAEMON's plugins in load order, with their state and last error."""
    suite = _load(config_file)
    try:
        with _client(suite, daemon) as client:
            rows = [plugin_dict(info) for info in client.list_plugins()]
    except ControlError as exc:
        raise click.ClickException(f"{daemon}: {exc.code}: {exc.details}") from None
    _print_rows(rows, as_json)


def _json_object(ctx: click.Context, param: click.Parameter, value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter(f"must be a JSON object, got {type(parsed).__name__}")
    return parsed


@plugins.command("load")
@config_option
@click.option("--plugin-config", "plugin_config", default="{}", metavar="JSON",
              callback=_json_object, help="The plugin's configuration as a JSON object.")
@click.argument("daemon", type=DAEMON)
@click.argument("name")
@click.argument("spec")
def plugins_load(config_file: Path | None, plugin_config: dict[str, Any], daemon: str,
                 name: str, spec: str) -> None:
    """Load plugin NAME into DAEMON from SPEC and start it.

    SPEC is an entry point name (group hft.plugins), package.module:Class, or a .py file
    (file.py:Class when it defines several plugins). Exits 1 if the plugin failed.
    """
    suite = _load(config_file)
    _client_call(suite, daemon, lambda client: client.load_plugin(name, spec, plugin_config))


@plugins.command("unload")
@config_option
@click.argument("daemon", type=DAEMON)
@click.argument("name")
def plugins_unload(config_file: Path | None, daemon: str, name: str) -> None:
    """Stop plugin NAME in DAEMON and release everything it hooked."""
    suite = _load(config_file)
    _client_call(suite, daemon, lambda client: client.unload_plugin(name))


@plugins.command("reload")
@config_option
@click.argument("daemon", type=DAEMON)
@click.argument("name")
def plugins_reload(config_file: Path | None, daemon: str, name: str) -> None:
    """Re-import plugin NAME's code in DAEMON and restart it.

    If the new code does not import, the running instance goes on and this exits 1 with
    the error.
    """
    suite = _load(config_file)
    _client_call(suite, daemon, lambda client: client.reload_plugin(name))


@plugins.command("command")
@config_option
@click.option("--args", "args", default="{}", metavar="JSON", callback=_json_object,
              help="The command's arguments as a JSON object.")
@click.argument("daemon", type=DAEMON)
@click.argument("name")
@click.argument("command")
def plugins_command(config_file: Path | None, args: dict[str, Any], daemon: str, name: str,
                    command: str) -> None:
    """Send COMMAND to plugin NAME in DAEMON and print its answer (JSON).

    Containers take commands, e.g. a strategy container: list, load, unload, reload,
    enable, disable, weight. Exits 1 if the plugin refused the command.
    """
    suite = _load(config_file)
    try:
        with _client(suite, daemon) as client:
            result = client.plugin_command(name, command, args)
    except ControlError as exc:
        raise click.ClickException(f"{daemon}: {exc.code}: {exc.details}") from None
    click.echo(json.dumps(result, indent=2))


@main.command()
def events() -> None:
    """Print the event protocol: every record type's fields, offsets and meaning."""
    from hft.daemons.runtime.events import describe

    click.echo(describe())


@main.command("gen-protos")
@click.option("--check", is_flag=True,
              help="Generate into a scratch directory and exit 1 if the files in protos/ "
                   "differ (for CI), instead of writing them.")
def gen_protos(check: bool) -> None:
    """Regenerate the Python code of protos/*.proto (needs the dev extra's grpcio-tools)."""
    try:
        if check:
            stale = protogen.stale_files()
            if stale:
                raise click.ClickException(
                    f"stale generated code (run hftctl gen-protos): {', '.join(map(str, stale))}")
            click.echo("generated code is up to date")
        else:
            for path in protogen.generate():
                click.echo(f"wrote {path}")
    except protogen.ProtoGenError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@json_option
@click.option("--quick", is_flag=True, help="A few seconds per benchmark (smoke test).")
@click.argument("names", nargs=-1, required=True)
def bench(as_json: bool, quick: bool, names: tuple[str, ...]) -> None:
    """Run the named benchmarks (or 'all') and print their results.

    Each result has its figures and, where a peer is measured in the same run, `baseline`
    and `ratio` (ours / the peer's: above 1 is faster). With --json, one object per line as
    each benchmark finishes. An unknown name lists the known ones.
    """
    from hft.ctl.bench import BenchError, resolve, run_iter  # heavy: import only when asked

    try:
        resolve(list(names))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        for result in run_iter(list(names), quick):
            click.echo(json.dumps(result) if as_json else format_bench(result))
    except BenchError as exc:
        raise click.ClickException(f"benchmark failed: {exc}") from None


main.add_command(data.import_ticks)
main.add_command(data.ticks)
main.add_command(data.bars)


@main.group()
def risk() -> None:
    """Pre-trade risk checks: decide an order stream offline against a set of limits."""


risk.add_command(riskcheck.check)

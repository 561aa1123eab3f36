"""``hftctl``: start, stop, inspect and manage the hft daemons from one command."""

from __future__ import annotations

import getpass
import json
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from hft.ctl import configcmd, data, launcher, logs, pnl, protogen, report, riskcheck, trading
from hft.ctl.client import ControlError, DaemonClient
from hft.ctl.options import config_option
from hft.ctl.report import format_table, plugin_dict
from hft.daemons.runtime.config import (
    CONTROL_TCP_PATTERN,
    DAEMON_NAMES,
    HOME_ENV,
    SuiteConfig,
    load_config,
)
from hft.daemons.runtime.events import EventType
from hft.daemons.runtime.token import read_token
from hft.protos import control_pb2

F = TypeVar("F", bound=Callable[..., Any])
DAEMON = click.Choice(DAEMON_NAMES)


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True,
                        help="One JSON object per line instead of a table.")(command)


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


def _one_line(exc: BaseException) -> str:
    """An error's message on one line: a multi-line one (a config's list of problems) joined
    with "; ", a KeyError's without repr quotes, an empty one as its type's name."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    head, *rest = [line.strip() for line in text.splitlines() if line.strip()] or [
        type(exc).__name__]
    return f"{head} {'; '.join(rest)}" if rest else head


class OneLineErrors(click.Group):
    """hftctl's command group: whatever a command raises (a bad config or token file, a
    daemon that does not answer, a missing journal, a full disk) is printed as one line,
    ``Error: ...``, with exit status 1, never a traceback. The one place errors are wrapped."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise  # click reports these itself (a closed pipe, `| head`, quietly)
        except Exception as exc:
            raise click.ClickException(_one_line(exc)) from None


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=f"The home directory (sockets, heartbeats, logs) is paths.home from the "
                    f"config; ${HOME_ENV} overrides it.")
@click.version_option(package_name="hft", prog_name="hftctl")  # the metadata's, as hft.__version__
def main() -> None:
    """Control the hft daemon suite: hft_md, engine, risk and monitor."""


class WatchdogNotRunning(click.ClickException):
    """``hftctl status`` when the watchdog does not answer: one line, exit status 4."""

    exit_code = report.EXIT_NO_WATCHDOG


@main.command()
@config_option
@click.option("--timeout", default=60.0, show_default=True, metavar="SECONDS",
              help="How long the daemons may take to run healthy.")
@click.argument("names", nargs=-1, type=DAEMON)
def start(config_file: Path | None, timeout: float, names: tuple[str, ...]) -> None:
    """Start daemons through the watchdog (default: every enabled one).

    Starts the watchdog first if it is not running (detached, its output in
    <home>/log/watchdog.log); it starts the daemons in order, each with its output in
    <home>/log/NAME.log, and restarts them when they fail. Returns once every one runs and
    answers SERVING. One that is already running is left alone. Exits 1 if one failed,
    naming the reason and showing the end of its log.
    """
    suite = load_config(config_file)
    wanted = _names(suite, names)
    watchdog = launcher.ensure_watchdog(suite, suite.watchdog.start_timeout_s)
    if watchdog is not None:
        _report([watchdog])
    _report(launcher.start(suite, [] if not names else wanted, timeout))


@main.command()
@config_option
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help="How long the processes may take to exit [default: watchdog.stop_timeout_s].")
@click.argument("names", nargs=-1, type=DAEMON)
def stop(config_file: Path | None, timeout: float | None, names: tuple[str, ...]) -> None:
    """Stop daemons gracefully and wait for their processes to exit.

    With names, those daemons stay stopped (the watchdog goes on) until started again.
    Without, every daemon and then the watchdog stop. A daemon that is not running is
    reported, not an error. Exits 1 if a process does not exit in time.
    """
    suite = load_config(config_file)
    timeout_s = suite.watchdog.stop_timeout_s if timeout is None else timeout
    if launcher.watchdog_pid(suite) is None and launcher.orphans(suite):
        # a killed watchdog left daemons behind: a new one adopts them, then stops them
        started = launcher.ensure_watchdog(suite, suite.watchdog.start_timeout_s)
        _report([started] if started is not None else [])
    _report(launcher.stop(suite, list(dict.fromkeys(names)), timeout_s))


@main.command()
@config_option
@click.option("--timeout", default=60.0, show_default=True, metavar="SECONDS",
              help="How long the daemon may take to run healthy again.")
@click.argument("name", type=DAEMON)
def restart(config_file: Path | None, timeout: float, name: str) -> None:
    """Stop daemon NAME (if it runs) and start it again through the watchdog.

    Also takes a daemon out of FATAL. Exits 1 if it does not run healthy again.
    """
    suite = load_config(config_file)
    _names(suite, (name,))
    watchdog = launcher.ensure_watchdog(suite, suite.watchdog.start_timeout_s)
    if watchdog is not None:
        _report([watchdog])
    _report(launcher.restart(suite, name, timeout))


@main.command()
@config_option
@json_option
def status(config_file: Path | None, as_json: bool) -> None:
    """Show the watchdog and every daemon: state, pid, uptime, restarts, health, heartbeat
    age, and why one is not running.

    States: stopped, starting, running, backoff (failed, started again after a delay),
    stopping, fatal (failed too often; hftctl start NAME tries again), foreign (a process
    the watchdog did not start serves its socket). Exit status 0 when every enabled daemon
    runs and is healthy, 3 when one does not, 4 when the watchdog is not running.
    """
    suite = load_config(config_file)
    try:
        with launcher.watchdog(suite) as client:
            watchdog, daemons = client.status(), client.daemons()
    except ControlError as exc:
        raise WatchdogNotRunning(
            f"the watchdog is not running (nothing answers on {exc.target}: {exc.code}); "
            "hftctl start starts it") from None
    rows = report.status_rows(watchdog, daemons)
    _print_rows(rows if as_json else report.table_rows(rows), as_json)
    raise SystemExit(report.exit_code(daemons))


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
    ctx.obj = _Remote(address, read_token(token_file))


@contextmanager
def _client(suite: SuiteConfig, daemon: str) -> Iterator[DaemonClient]:
    """DAEMON's control plane: the TCP listener given to ``plugins --connect``, else its Unix
    socket. A failed call is reported by the daemon's name: ``engine: NOT_FOUND: ...``."""
    remote = click.get_current_context().find_object(_Remote)
    try:
        with (DaemonClient(suite.socket_path(daemon)) if remote is None
              else DaemonClient(remote.address, token=remote.token)) as client:
            yield client
    except ControlError as exc:
        raise click.ClickException(f"{daemon}: {exc.code}: {exc.details}") from None


def _client_call(suite: SuiteConfig, daemon: str,
                 call: Callable[[DaemonClient], control_pb2.PluginInfo]) -> None:
    """Run one plugin command and print the plugin; exit 1 if it failed or was refused."""
    with _client(suite, daemon) as client:
        info = call(client)
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
    suite = load_config(config_file)
    with _client(suite, daemon) as client:
        rows = [plugin_dict(info) for info in client.list_plugins()]
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
    suite = load_config(config_file)
    _client_call(suite, daemon, lambda client: client.load_plugin(name, spec, plugin_config))


@plugins.command("unload")
@config_option
@click.argument("daemon", type=DAEMON)
@click.argument("name")
def plugins_unload(config_file: Path | None, daemon: str, name: str) -> None:
    """Stop plugin NAME in DAEMON and release everything it hooked."""
    suite = load_config(config_file)
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
    suite = load_config(config_file)
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
    suite = load_config(config_file)
    with _client(suite, daemon) as client:
        result = client.plugin_command(name, command, args)
    click.echo(json.dumps(result, indent=2))


def _journal_view(config_file: Path | None,
                  view: Callable[[Iterator[tuple[EventType, Any]]], list[dict[str, Any]]],
                  as_json: bool) -> None:
    directory, name = trading.risk_journal(load_config(config_file))
    _print_rows(view(trading.records(directory, name)), as_json)


@main.command()
@config_option
@json_option
def orders(config_file: Path | None, as_json: bool) -> None:
    """Every order the risk daemon sent or refused, oldest first, with its latest status.

    Read from the risk journal; the ORDER_REF column is what ``hftctl cancel`` takes.
    """
    _journal_view(config_file, trading.orders, as_json)


@main.command()
@config_option
@json_option
def trades(config_file: Path | None, as_json: bool) -> None:
    """Every fill the gateway returned, oldest first (from the risk journal)."""
    _journal_view(config_file, trading.trades, as_json)


@main.command()
@config_option
@json_option
def positions(config_file: Path | None, as_json: bool) -> None:
    """The latest position of each account, instrument and direction (POS_UPDATE)."""
    _journal_view(config_file, trading.positions, as_json)


@main.command()
@config_option
@click.option("--account", default=None, help="The order's account, when ORDER_REF alone is "
              "ambiguous.")
@click.argument("order_ref", type=int)
def cancel(config_file: Path | None, account: str | None, order_ref: int) -> None:
    """Cancel working order ORDER_REF (see ``hftctl orders``) through the risk daemon.

    The cancel is checked and journaled like a strategy's; exits 1 if it is refused or the
    order is not working.
    """
    suite = load_config(config_file)
    args: dict[str, Any] = {"order_ref": order_ref}
    if account is not None:
        args["account"] = account
    desk = trading.desk_name(suite)
    with _client(suite, trading.RISK_DAEMON) as client:
        result = client.plugin_command(desk, "cancel", args)
    click.echo(f"cancel of {result['cancelled']} ({result['account']}, {result['instrument']}) "
               "sent")


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
    if check:
        stale = protogen.stale_files()
        if stale:
            raise click.ClickException(
                f"stale generated code (run hftctl gen-protos): {', '.join(map(str, stale))}")
        click.echo("generated code is up to date")
    else:
        for path in protogen.generate():
            click.echo(f"wrote {path}")


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
    try:
        from hft.bench import format_text, resolve, run_iter  # heavy: only when asked
    except ModuleNotFoundError as exc:
        missing = (exc.name or str(exc)).partition(".")[0]
        raise click.ClickException(
            f"hftctl bench needs the benchmark peers ({missing} is not installed): run "
            "bash ops/setup.sh, or pip install 'hft[bench]' and pip install --no-deps "
            "vnpy==4.5.0") from None
    try:
        resolve(list(names))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    for result in run_iter(list(names), quick):
        click.echo(json.dumps(result) if as_json else format_text(result))


main.add_command(data.import_ticks)
main.add_command(data.ticks)
main.add_command(data.bars)
main.add_command(pnl.pnl_command)


@main.group()
def risk() -> None:
    """Pre-trade risk: the running desk's kill switch and limits, or a stream decided offline.

    kill, resume, show and set act on the running risk daemon's order desk; each switch and
    limit change is journaled with who made it and survives a restart. check decides an
    order stream offline against a limits file.
    """


risk.add_command(riskcheck.check)


def _desk_command(config_file: Path | None, command: str, args: dict[str, Any]) -> Any:
    """Send ``command`` to the running order desk, signed with who asked."""
    suite = load_config(config_file)
    args["by"] = f"{getpass.getuser()}@{socket.gethostname()}"[:48]
    with _client(suite, trading.RISK_DAEMON) as client:
        return client.plugin_command(trading.desk_name(suite), command, args)


@risk.command("kill")
@config_option
@click.option("--cancel-all", is_flag=True, help="Also cancel every working order.")
def risk_kill(config_file: Path | None, cancel_all: bool) -> None:
    """Refuse every new order and cancel from now on (until ``hftctl risk resume``)."""
    result = _desk_command(config_file, "kill", {"cancel_all": cancel_all})
    click.echo(f"kill switch on; {result['cancelled']} working order(s) cancelled")


@risk.command("resume")
@config_option
def risk_resume(config_file: Path | None) -> None:
    """Turn the kill switch off: orders are checked and sent again."""
    _desk_command(config_file, "resume", {})
    click.echo("kill switch off")


@risk.command("show")
@config_option
@json_option
def risk_show(config_file: Path | None, as_json: bool) -> None:
    """The limits in force (each table with the keys it sets) and the kill switch."""
    shown = _desk_command(config_file, "show", {})
    if as_json:
        click.echo(json.dumps(shown))
        return
    click.echo(f"kill switch: {'on' if shown['killed'] else 'off'}")
    _print_rows([{"table": table, "key": key, "value": value}
                 for table, keys in shown["limits"].items() for key, value in keys.items()],
                as_json=False)


@risk.command("set")
@config_option
@click.argument("account")
@click.argument("key")
@click.argument("value")
def risk_set(config_file: Path | None, account: str, key: str, value: str) -> None:
    """Set limit KEY of ACCOUNT's table (or ``default``) to VALUE; ``none`` unsets it.

    Refused, naming the key and the reason, when the value does not fit; the change is
    journaled with who made it and kept across restarts.
    """
    table = _desk_command(config_file, "set", {"account": account, "key": key,
                                               "value": None if value == "none" else value})
    click.echo(f"{account}: {json.dumps(table)}")


main.add_command(logs.logs_command)
main.add_command(configcmd.config_group)

"""``hft-daemon NAME [--config FILE]`` (also ``python -m hft.daemons``): run one daemon."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hft.daemons.runtime.config import DAEMON_NAMES, HOME_ENV, ConfigError, load_config
from hft.daemons.runtime.host import (
    EXIT_STARTUP_FAILED,
    EXIT_STOP_TIMED_OUT,
    EXIT_USAGE,
    run_daemon,
)


def _parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="hft-daemon",
        description="Run one hft daemon in the foreground: its plugins, the gRPC control "
                    "server on a Unix socket, Prometheus /metrics on 127.0.0.1 and a "
                    "heartbeat file. Usually started by `hftctl start` or the watchdog.",
        epilog=f"Daemons: {', '.join(DAEMON_NAMES)}. The home directory (sockets in run/, "
               f"logs in log/) is paths.home from the config; ${HOME_ENV} overrides it. "
               "SIGTERM or SIGINT stops the daemon gracefully (exit status 0). Exit status "
               f"{EXIT_STARTUP_FAILED}: it could not start; {EXIT_USAGE}: bad arguments or config; "
               f"{EXIT_STOP_TIMED_OUT}: the stop took longer than stop_timeout_s (a plugin was "
               "stuck; the log names it).",
    )


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    parser.add_argument("name", metavar="NAME", choices=DAEMON_NAMES,
                        help=f"which daemon to run: {', '.join(DAEMON_NAMES)}")
    parser.add_argument("--config", metavar="FILE", type=Path,
                        help="suite config (TOML); default: the built-in daemons/default.toml")
    args = parser.parse_args(argv)
    try:
        suite = load_config(args.config)
    except ConfigError as exc:
        print(f"hft-daemon: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not suite.daemon(args.name).enabled:
        print(f"hft-daemon: {args.name} is disabled in {suite.source} "
              f"(daemons.{args.name}.enabled = false)", file=sys.stderr)
        return EXIT_USAGE
    return run_daemon(f"hft-daemon {args.name}", args.name, suite)


if __name__ == "__main__":
    sys.exit(main())

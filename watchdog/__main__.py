"""``hft-watchdog [--config FILE] [--no-autostart]`` (also ``python -m hft.watchdog``): the
supervisor of the daemon suite, itself a daemon named "watchdog"."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hft.daemons.runtime.config import HOME_ENV, WATCHDOG, ConfigError, load_config
from hft.daemons.runtime.host import (
    EXIT_STARTUP_FAILED,
    EXIT_STOP_TIMED_OUT,
    EXIT_USAGE,
    run_daemon,
)
from hft.watchdog.alerts import AlertSender
from hft.watchdog.supervisor import Supervisor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hft-watchdog",
        description="Supervise the hft daemons in the foreground: start them in order, check "
                    "them (psutil, gRPC health, heartbeats), restart failures with backoff, "
                    "send alerts; controlled over gRPC on <home>/run/watchdog.sock (hftctl "
                    "start, stop, restart, status). Usually started by `hftctl start`.",
        epilog=f"${HOME_ENV} overrides paths.home. SIGTERM or SIGINT stops every daemon, then "
               f"the watchdog (exit 0). Exit status {EXIT_STARTUP_FAILED}: it could not start "
               f"(another watchdog owns this home); {EXIT_USAGE}: bad arguments or config; "
               f"{EXIT_STOP_TIMED_OUT}: its stop took longer than watchdog.stop_timeout_s.")
    parser.add_argument("--config", metavar="FILE", type=Path,
                        help="suite config (TOML); default: the built-in daemons/default.toml")
    parser.add_argument("--no-autostart", dest="autostart", action="store_false",
                        help="adopt the daemons an earlier watchdog left running but start no "
                             "other until asked (hftctl start); by default every enabled daemon "
                             "is started unless it was stopped on purpose")
    args = parser.parse_args(argv)
    try:
        suite = load_config(args.config)
    except ConfigError as exc:
        print(f"hft-watchdog: {exc}", file=sys.stderr)
        return EXIT_USAGE
    alerts = AlertSender(suite.watchdog.webhooks, registry=None)  # served by the supervisor
    return run_daemon("hft-watchdog", WATCHDOG, suite, Supervisor(suite, alerts, args.autostart))


if __name__ == "__main__":
    sys.exit(main())

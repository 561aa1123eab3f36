"""``hft-watchdog [--config FILE] [--no-autostart]`` (also ``python -m hft.watchdog``): the
supervisor of the daemon suite, itself a daemon named "watchdog"."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hft.daemons.runtime.config import HOME_ENV, WATCHDOG, ConfigError, load_config
from hft.daemons.runtime.host import EXIT_STOP_TIMED_OUT, DaemonHost, StartupError
from hft.daemons.runtime.logs import configure_logging
from hft.watchdog.alerts import AlertSender
from hft.watchdog.supervisor import Supervisor

EXIT_STARTUP_FAILED = 1
EXIT_USAGE = 2


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
    configure_logging(WATCHDOG, level=suite.logging.level, stderr=suite.logging.stderr,
                      file=suite.json_log_path(WATCHDOG) if suite.logging.file else None)
    alerts = AlertSender(suite.watchdog.webhooks, registry=None)  # served by the supervisor
    supervisor = Supervisor(suite, alerts, args.autostart)
    try:
        return DaemonHost(WATCHDOG, suite, supervisor).run()
    except StartupError as exc:
        logging.getLogger("hft.watchdog").error("cannot start", extra={"error": str(exc)})
        if not suite.logging.stderr:
            print(f"hft-watchdog: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP_FAILED


if __name__ == "__main__":
    sys.exit(main())

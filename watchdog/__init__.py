"""hft.watchdog: supervision of the daemons (start, check, restart, alert)."""

from hft import require_namespace

require_namespace(__name__)

"""hft.watchdog: supervision of the daemons (to come)."""

from hft import require_namespace

require_namespace(__name__)

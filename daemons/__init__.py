"""hft.daemons: the runtime every daemon is made of, and each daemon's plugins."""

from hft import require_namespace

require_namespace(__name__)

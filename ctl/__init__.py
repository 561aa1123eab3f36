"""hft.ctl: the ``hftctl`` command line, the gRPC client and the launcher."""

from hft import require_namespace

require_namespace(__name__)

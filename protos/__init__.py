"""hft.protos: control.proto and its generated code (``hftctl gen-protos``)."""

from hft import require_namespace

require_namespace(__name__)

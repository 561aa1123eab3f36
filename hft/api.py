"""What a strategy or factor author imports: the plugin base classes, the event protocol and
the record readers, from one place.

The names in ``__all__`` are the contract. They live in the runtime's own modules
(``hft.daemons.runtime.plugins``, ``hft.daemons.runtime.events``, ...), which stay importable
but may be reorganised; this module re-exports the very same objects, so a record type or a
base class is one class whichever path imported it. The README's "Writing a strategy or a
factor" shows a complete child strategy and factor built only from these names.
"""

from __future__ import annotations

from hft.daemons.engine.factors.base import (
    BarFactorConfig,
    Factor,
    FactorConfig,
    FactorDef,
    field_reader,
)
from hft.daemons.engine.factors.host import FactorPlugin
from hft.daemons.engine.strategy.child import Strategy
from hft.daemons.runtime.events import (
    ALERT_DTYPE,
    BAR_DTYPE,
    CANCEL_DTYPE,
    DEPTH,
    DTYPES,
    FACTOR_DTYPE,
    ORDER_DTYPE,
    POS_DTYPE,
    RECORD_SIZE,
    REJECT_DTYPE,
    RTN_ORDER_DTYPE,
    RTN_TRADE_DTYPE,
    TICK_DTYPE,
    TIMER_DTYPE,
    AlertLevel,
    Direction,
    EventType,
    Offset,
    OrderStatus,
    PriceType,
    TickFlag,
    empty,
    fields_struct,
    record_struct,
)
from hft.daemons.runtime.plugins import Plugin, PluginContext, PluginError

__all__ = [
    "ALERT_DTYPE",
    "BAR_DTYPE",
    "CANCEL_DTYPE",
    "DEPTH",
    "DTYPES",
    "FACTOR_DTYPE",
    "ORDER_DTYPE",
    "POS_DTYPE",
    "RECORD_SIZE",
    "REJECT_DTYPE",
    "RTN_ORDER_DTYPE",
    "RTN_TRADE_DTYPE",
    "TICK_DTYPE",
    "TIMER_DTYPE",
    "AlertLevel",
    "BarFactorConfig",
    "Direction",
    "EventType",
    "Factor",
    "FactorConfig",
    "FactorDef",
    "FactorPlugin",
    "Offset",
    "OrderStatus",
    "Plugin",
    "PluginContext",
    "PluginError",
    "PriceType",
    "Strategy",
    "TickFlag",
    "empty",
    "field_reader",
    "fields_struct",
    "record_struct",
]

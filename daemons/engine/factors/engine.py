"""FactorEngine: several factors in one plugin, under one subscription per event type.

Each factor is named by the spec of its factor plugin (an entry point such as
``factor_ema``, or ``module:Class``) and that plugin's config::

    [daemons.engine.plugins.factors]
    spec = "factor_engine"
    config = { factors = [
        { spec = "factor_ema", config = { period = 20 } },
        { spec = "factor_book_imbalance", config = { levels = 5 } },
    ] }

Hosting them together reads each record's header and finds its instrument once for all of
them. A factor that must be loaded, unloaded or reloaded on its own while the others keep
their state runs as its own plugin instead (``hftctl plugins load engine ema20
hft.daemons.engine.factors.ema:EmaFactor --plugin-config '{"period": 20}'``).
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hft.daemons.engine.factors.base import FactorDef
from hft.daemons.engine.factors.host import FactorHost, FactorPlugin
from hft.daemons.runtime.plugins import PluginError, entry_point


class FactorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: str = Field(min_length=1)
    """A factor plugin: entry point name (group hft.plugins) or ``module:Class``."""
    config: dict[str, Any] = {}


class FactorEngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    factors: list[FactorSpec] = Field(min_length=1)


class FactorEngine(FactorHost):
    """Plugin: the factors listed in its config (see the module docstring)."""

    Config = FactorEngineConfig

    def definitions(self, config: FactorEngineConfig) -> list[FactorDef]:
        definitions = []
        for position, entry in enumerate(config.factors):
            plugin = factor_plugin(entry.spec)
            try:
                settings = plugin.Config.model_validate(entry.config) if plugin.Config else entry.config
            except ValueError as exc:
                raise ValueError(f"factors[{position}] ({entry.spec}): {exc}") from None
            definitions.append(plugin.define(settings))
        return definitions


def factor_plugin(spec: str) -> type[FactorPlugin]:
    """The FactorPlugin subclass a spec names; PluginError says why when it names none."""
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        module_name, attribute = entry_point(spec)
    found = getattr(importlib.import_module(module_name), attribute, None)
    if not (isinstance(found, type) and issubclass(found, FactorPlugin)):
        raise PluginError(f"{spec!r} is not a factor plugin (a FactorPlugin subclass)")
    return found

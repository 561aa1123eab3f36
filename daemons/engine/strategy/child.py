"""Child strategies: plugins run by a StrategyContainer, which trades the net of their targets.

A child is an ordinary plugin (a ``Config``, ``init``/``start``/``stop``, loaded from an entry
point, ``module:Class`` or a file) whose ``ctx.bus`` is its container's bus for children:
the container forwards MARKET_DATA, BAR, FACTOR (while some child subscribes to it), TIMER,
POS_UPDATE, RTN_ORDER, RTN_TRADE and RISK_REJECT to it, and nothing a child publishes there
leaves the container. A child does not send orders: it says how many lots it wants to hold
with :meth:`Strategy.set_target` and the container sends the orders for the net of every
child, once the event that moved them has reached them all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from hft.daemons.engine.strategy.ledger import Party, instrument_key
from hft.daemons.runtime.plugins import Plugin, PluginContext, PluginError


class StrategyHost(ABC):
    """What a container offers its children besides the usual host services."""

    @abstractmethod
    def party(self, name: str) -> Party:
        """The book of the child called ``name``."""

    @abstractmethod
    def set_target(self, party: Party, instrument: str | bytes, lots: float) -> None:
        """``party`` wants to hold ``lots`` (signed) of ``instrument``."""

    @abstractmethod
    def pnl(self, party: Party) -> float:
        """``party``'s marked-to-market PnL, CNY."""


class Strategy(Plugin):
    """Base class of a child strategy (see the module docstring)."""

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        if not isinstance(ctx.host, StrategyHost):
            raise PluginError(
                f"{type(self).__name__} is a child strategy: load it into a StrategyContainer "
                "(hftctl plugins command DAEMON CONTAINER load --args "
                "'{\"name\": ..., \"spec\": ...}'), not into the daemon")
        self._strategy_host = ctx.host
        self._party = ctx.host.party(ctx.name)

    def set_target(self, instrument: str | bytes, lots: float) -> None:
        """Want to hold ``lots`` of ``instrument`` (+ long, - short, 0 flat)."""
        self._strategy_host.set_target(self._party, instrument, lots)

    def target(self, instrument: str | bytes) -> float:
        holding = self._party.holdings.get(instrument_key(instrument))
        return holding.target if holding else 0.0

    def position(self, instrument: str | bytes) -> float:
        """Lots attributed to this child (see the ledger's attribution rule)."""
        holding = self._party.holdings.get(instrument_key(instrument))
        return holding.lots if holding else 0.0

    def pnl(self) -> float:
        return self._strategy_host.pnl(self._party)

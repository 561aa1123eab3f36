"""The strategy tree: a container plugin hosting child strategy plugins and trading the net
of their target positions.

- ``container``: StrategyContainer (children, netting, commands, metrics); ``router``: its
  orders out and returns in; ``position``: CTP positions and offsets; ``ledger``: targets,
  attribution of fills and PnL per child; ``child``: the Strategy base class.
- Samples: ``dual_ema`` (DualEmaCross, on bars), ``book_imbalance`` (ImbalanceStrategy, on
  ticks).
"""

"""Factors: incremental (per tick or bar, O(1)) and vectorized (over history) with the same
values, published as FACTOR events.

- ``base``: the Factor API and FactorDef; ``host``: the plugin machinery (FactorHost,
  FactorPlugin); ``engine``: FactorEngine, several factors in one plugin.
- Shipped factors, each its own plugin too: ``ema`` (EmaFactor), ``vwap`` (VwapFactor),
  ``imbalance`` (BookImbalanceFactor), ``volatility`` (RealizedVolFactor), ``momentum``
  (MomentumFactor).
"""

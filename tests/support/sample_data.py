"""The real market data the tests read, shipped in ``tests/data`` (sources and licence in its
README): the repository stands alone, with no sibling folders."""

from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
IF_DAY = DATA / "IF2101_20210104_ticks.csv"
"""27,955 real CTP snapshots of CFFEX IF2101, TradingDay 2021-01-04."""
IF_DAILY_REFERENCE = DATA / "IF_daily_reference.csv"
"""The vendor's daily bars of the same product (2020-12-31 and 2021-01-04)."""

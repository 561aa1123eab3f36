"""The engine's product table: loaded once per process, shared by every plugin that needs
reference data (the K-line builder's sessions, the factors' multipliers, the strategy
router's exchange, multiplier and price tick)."""

from __future__ import annotations

import functools

from hft.daemons.refdata.instruments import Product, ProductTable


@functools.cache
def products() -> ProductTable:
    """The shipped product table, loaded on first use (it is only read afterwards)."""
    return ProductTable.load()


def product_of(instrument: str) -> Product | None:
    """The instrument's product, or None when the table does not know it (or the id has no
    product code): callers decide whether that is an error."""
    try:
        return products().product_of(instrument)
    except (KeyError, ValueError):
        return None

"""Products and instruments: exchange, multiplier, price tick and session of each contract.

In sim and backtest mode the product table comes from the shipped commodities.json; in live
mode the CTP adapter fills the same :class:`Product` records from ``ReqQryInstrument``.
Instruments get a dense index at registration, used as ``instrument_index`` in records so
consumers look them up in O(1).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources

from hft.daemons.refdata.sessions import SessionTemplate, load_templates

_PRODUCT = re.compile(r"^([A-Za-z]+)\d")
SPLIT_CLOSE_EXCHANGES = frozenset({"SHFE", "INE"})
"""Exchanges where a close says whether it closes today's lots (close today) or yesterday's
(close, close yesterday); elsewhere any close takes yesterday's lots first, then today's."""


@dataclass(frozen=True)
class Product:
    exchange: str
    code: str
    name: str
    multiplier: int
    price_tick: float
    precision: int
    session: SessionTemplate


@dataclass(frozen=True)
class Instrument:
    id: str
    index: int
    product: Product

    @property
    def exchange(self) -> str:
        return self.product.exchange

    @property
    def exchange_id(self) -> bytes:
        return self.product.exchange.encode()


def product_code(instrument_id: str) -> str:
    """'IF2101' -> 'IF', 'rb2105' -> 'rb', 'SR101' -> 'SR' (CZCE's three-digit months)."""
    match = _PRODUCT.match(instrument_id)
    if match is None:
        raise ValueError(f"instrument id {instrument_id!r} does not start with a product code "
                         "followed by a delivery month")
    return match.group(1)


class ProductTable:
    """Products by code, with their session templates."""

    def __init__(self, products: dict[str, Product]) -> None:
        self._products = products

    @classmethod
    def load(cls, commodities: str | None = None, sessions: str | None = None) -> ProductTable:
        """The shipped table, or one from the given JSON texts (same format)."""
        if commodities is None:
            data = resources.files("hft.daemons.refdata").joinpath("data/commodities.json")
            commodities = data.read_text("utf-8")
        templates = load_templates(sessions)
        products = {}
        for exchange, entries in json.loads(commodities).items():
            for code, spec in entries.items():
                products[code] = Product(exchange, code, spec["name"], int(spec["volscale"]),
                                         float(spec["pricetick"]), int(spec["precision"]),
                                         templates[spec["session"]])
        return cls(products)

    def __getitem__(self, code: str) -> Product:
        try:
            return self._products[code]
        except KeyError:
            raise KeyError(f"unknown product {code!r}; the product table has "
                           f"{len(self._products)} products") from None

    def __contains__(self, code: object) -> bool:
        return code in self._products

    def product_of(self, instrument_id: str) -> Product:
        return self[product_code(instrument_id)]


class InstrumentTable:
    """Registered instruments with stable dense indices."""

    def __init__(self, products: ProductTable) -> None:
        self.products = products
        self._by_id: dict[str, Instrument] = {}
        self._by_index: list[Instrument] = []

    def register(self, instrument_id: str, product: Product | None = None) -> Instrument:
        """The instrument, added on first use (its product from the table unless given)."""
        known = self._by_id.get(instrument_id)
        if known is not None:
            return known
        instrument = Instrument(instrument_id, len(self._by_index),
                                product or self.products.product_of(instrument_id))
        self._by_id[instrument_id] = instrument
        self._by_index.append(instrument)
        return instrument

    def __getitem__(self, instrument_id: str) -> Instrument:
        return self._by_id[instrument_id]

    def by_index(self, index: int) -> Instrument:
        return self._by_index[index]

    def __len__(self) -> int:
        return len(self._by_index)

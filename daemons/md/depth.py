"""One depth snapshot as every source hands it to the normalizer: :class:`DepthValues`.

The CTP struct reader, the CSV import, the simulated market and the CTP emulator all build the
same NamedTuple, named after the CThostFtdcDepthMarketDataField fields it is made of, so a
producer spells each value by name (``DepthValues(TradingDay=..., LastPrice=...)``, or
``DepthValues._make`` on the tuple of one ``struct.unpack``) and the normalizer still takes a
plain tuple on the hot path.
"""

from typing import NamedTuple

EMPTY_PRICE = 1.7976931348623157e308
"""What CTP sends for a price it has no value for (DBL_MAX); the normalizer stores NaN."""


class DepthValues(NamedTuple):
    """The snapshot fields the normalizer reads, in the order CThostFtdcDepthMarketDataField
    declares them (so the struct reader's one unpack needs no reordering). Texts are bytes,
    NUL padded when read from the raw struct; prices may be EMPTY_PRICE."""

    TradingDay: bytes
    ExchangeID: bytes
    LastPrice: float
    PreSettlementPrice: float
    PreClosePrice: float
    PreOpenInterest: float
    OpenPrice: float
    HighestPrice: float
    LowestPrice: float
    Volume: int
    Turnover: float
    OpenInterest: float
    ClosePrice: float
    SettlementPrice: float
    UpperLimitPrice: float
    LowerLimitPrice: float
    UpdateTime: bytes
    UpdateMillisec: int
    BidPrice1: float
    BidVolume1: int
    AskPrice1: float
    AskVolume1: int
    BidPrice2: float
    BidVolume2: int
    AskPrice2: float
    AskVolume2: int
    BidPrice3: float
    BidVolume3: int
    AskPrice3: float
    AskVolume3: int
    BidPrice4: float
    BidVolume4: int
    AskPrice4: float
    AskVolume4: int
    BidPrice5: float
    BidVolume5: int
    AskPrice5: float
    AskVolume5: int
    AveragePrice: float
    ActionDay: bytes
    InstrumentID: bytes


DEPTH_FIELDS: tuple[str, ...] = DepthValues._fields
"""The field names, in DepthValues order."""
TEXT_FIELDS = frozenset(name for name, kind in DepthValues.__annotations__.items() if kind is bytes)
"""The fields that are texts (bytes)."""

"""Real openctp-ctp structs as a CTP front fills them, shared by the market-data tests."""

from __future__ import annotations

from typing import Any

from openctp_ctp import mdapi

from hft.daemons.md.depth import EMPTY_PRICE as DBL_MAX

_EMPTY_PRICES = ("OpenPrice", "HighestPrice", "LowestPrice", "ClosePrice", "SettlementPrice",
                 "PreClosePrice", "PreSettlementPrice", "UpperLimitPrice", "LowerLimitPrice",
                 "AveragePrice", "BidPrice2", "BidPrice3", "BidPrice4", "BidPrice5",
                 "AskPrice2", "AskPrice3", "AskPrice4", "AskPrice5")


def depth(instrument: str = "rb2605", *, exchange: str = "SHFE", trading_day: str = "20260105",
          action_day: str | None = None, time_: str = "10:00:00", ms: int = 500,
          last: float = 3100.0, volume: int = 10) -> Any:
    """A CThostFtdcDepthMarketDataField with level-1 quotes; the empty prices are DBL_MAX."""
    md = mdapi.CThostFtdcDepthMarketDataField()
    md.InstrumentID, md.ExchangeID = instrument, exchange
    md.TradingDay, md.ActionDay = trading_day, trading_day if action_day is None else action_day
    md.UpdateTime, md.UpdateMillisec = time_, ms
    md.LastPrice, md.Volume, md.Turnover, md.OpenInterest = last, volume, last * volume * 10, 1000.0
    for name in _EMPTY_PRICES:
        setattr(md, name, DBL_MAX)
    md.BidPrice1, md.BidVolume1, md.AskPrice1, md.AskVolume1 = last - 1, 3, last + 1, 4
    return md

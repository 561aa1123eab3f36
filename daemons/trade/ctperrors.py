"""CTP's ErrorIDs and prompts (its error.xml) for the refusals the trading side gives.

One home for them: the simulated exchange answers with these, so a strategy, the risk daemon
and ``hftctl`` see the same ids and texts from the simulator as from a real CTP counter, and
the CTP trader gateway can name the ids it receives.
"""

from __future__ import annotations

from enum import IntEnum


class CtpError(IntEnum):
    """ErrorID values, named as in CTP's error.xml."""

    NONE = 0
    INVESTOR_NOT_FOUND = 13
    BAD_FIELD = 15
    INSTRUMENT_NOT_FOUND = 16
    INSTRUMENT_NOT_TRADING = 17
    DUPLICATE_ORDER_REF = 22
    ORDER_NOT_FOUND = 25
    INSUITABLE_ORDER_STATUS = 26
    OVER_CLOSE_POSITION = 30
    INSUFFICIENT_MONEY = 31
    OVER_CLOSETODAY_POSITION = 50
    OVER_CLOSEYESTERDAY_POSITION = 51
    PRICETYPE_NOTSUPPORT_BYEXCHANGE = 80
    PRICE_OVER_LIMIT = 163
    PRICE_WRONG_TICK = 165


PROMPTS: dict[CtpError, str] = {
    CtpError.NONE: "CTP:正确",
    CtpError.INVESTOR_NOT_FOUND: "CTP:找不到投资者",
    CtpError.BAD_FIELD: "CTP:报单字段有误",
    CtpError.INSTRUMENT_NOT_FOUND: "CTP:找不到合约",
    CtpError.INSTRUMENT_NOT_TRADING: "CTP:合约不能交易",
    CtpError.DUPLICATE_ORDER_REF: "CTP:报单错误：不允许重复报单",
    CtpError.ORDER_NOT_FOUND: "CTP:撤单找不到相应报单",
    CtpError.INSUITABLE_ORDER_STATUS: "CTP:报单已全成交或已撤销，不能再撤",
    CtpError.OVER_CLOSE_POSITION: "CTP:平仓量超过持仓量",
    CtpError.INSUFFICIENT_MONEY: "CTP:资金不足",
    CtpError.OVER_CLOSETODAY_POSITION: "CTP:平今仓位不足",
    CtpError.OVER_CLOSEYESTERDAY_POSITION: "CTP:平昨仓位不足",
    CtpError.PRICETYPE_NOTSUPPORT_BYEXCHANGE: "CTP:交易所不支持的价格类型",
    CtpError.PRICE_OVER_LIMIT: "CTP:报单价格不在涨跌停板价范围内",
    CtpError.PRICE_WRONG_TICK: "CTP:报单价格非最小变动价位整数倍",
}
"""The prompt CTP sends with each ErrorID (UTF-8 here; GB18030 on the wire)."""

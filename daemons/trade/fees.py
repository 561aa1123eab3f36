"""A product's fee schedule: commissions and margin rate, as a counter charges them.

One model for the two places that charge: the simulated exchange's account view (what the
counter takes) and the risk daemon's live position book (what the desk books for each fill,
since CTP's OnRtnTrade carries no commission).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Fees(BaseModel):
    """Commission and margin of one product. A commission is ``lots x per_lot + turnover x
    rate``, turnover being price x lots x multiplier (CNY)."""

    model_config = ConfigDict(extra="forbid")

    open_per_lot: float = Field(default=0.0, ge=0.0)
    close_per_lot: float = Field(default=0.0, ge=0.0)
    close_today_per_lot: float = Field(default=0.0, ge=0.0)
    open_rate: float = Field(default=0.0, ge=0.0, lt=1.0)
    close_rate: float = Field(default=0.0, ge=0.0, lt=1.0)
    close_today_rate: float = Field(default=0.0, ge=0.0, lt=1.0)
    margin_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    """Margin as a share of the contract value (price x lots x multiplier)."""

    def open_commission(self, price: float, volume: int, multiplier: int) -> float:
        return volume * (price * multiplier * self.open_rate + self.open_per_lot)

    def close_commission(self, price: float, today: int, yesterday: int, multiplier: int) -> float:
        """A close of ``today`` lots opened today and ``yesterday`` lots carried over."""
        return (today * (price * multiplier * self.close_today_rate + self.close_today_per_lot)
                + yesterday * (price * multiplier * self.close_rate + self.close_per_lot))

    def margin(self, price: float, volume: int, multiplier: int) -> float:
        return price * volume * multiplier * self.margin_rate

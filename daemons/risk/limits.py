"""The risk limits: a ``[default]`` table for every account and ``[accounts.NAME]`` overrides.

Every key turns one check on: a key that is not set (in the account's table or in
``[default]``) leaves its check off. Validation is strict (no unknown keys, no coercion of
strings to numbers in a file) so a typo is refused with the key and the reason instead of
silently leaving a check off::

    [default]
    max_orders_per_s = 20
    max_order_volume = 50
    self_trade = "reject"

    [accounts.sim-a]
    max_orders_per_s = 10        # overrides [default] for sim-a only

When ``accounts`` lists any account, only those accounts trade (any other is refused as
``malformed``); with none listed, every account trades under ``[default]``.
"""

from __future__ import annotations

import re
import reprlib
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ACCOUNT_PATTERN = r"^[A-Za-z0-9_.@-]{1,16}$"
"""An ORDER_REQ's account field is 16 ASCII bytes."""
DEFAULT = "default"
"""The name ``set``/``show`` use for the ``[default]`` table."""

SelfTradeMode = Literal["reject", "cancel_resting", "off"]


class LimitError(ValueError):
    """Limits that cannot be used; ``problems`` holds (key path, reason) pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = [f"  {key}: {reason}" if key else f"  {reason}" for key, reason in problems]
        super().__init__(f"invalid risk limits {source}:\n" + "\n".join(lines))


class AccountLimits(BaseModel):
    """One table of limits; None = not set here (the check is off unless another table of the
    same account sets it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_orders_per_s: int | None = Field(default=None, ge=1, le=100_000)
    max_cancels_per_s: int | None = Field(default=None, ge=1, le=100_000)
    max_order_volume: int | None = Field(default=None, ge=1)
    max_order_notional: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_ticks_from_last: int | None = Field(default=None, ge=0)
    max_net_position: int | None = Field(default=None, ge=0)
    max_gross_position: int | None = Field(default=None, ge=0)
    max_working_orders: int | None = Field(default=None, ge=0)
    duplicate_window_ms: int | None = Field(default=None, ge=1, le=86_400_000)
    self_trade: SelfTradeMode | None = None
    cancel_ratio_min_orders: int | None = Field(default=None, ge=0)
    cancel_ratio_warn: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    cancel_ratio_limit: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_daily_cancels: int | None = Field(default=None, ge=0)
    daily_cancels_warn: int | None = Field(default=None, ge=1)
    max_daily_loss: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    def over(self, base: AccountLimits) -> AccountLimits:
        """These limits with ``base``'s filling every key not set here."""
        return base.model_copy(update=self.model_dump(exclude_none=True))

    def contradictions(self) -> list[tuple[str, str]]:
        """Pairs of keys that cannot hold together (checked on an account's merged limits)."""
        problems = []
        if (self.daily_cancels_warn is not None and self.max_daily_cancels is not None
                and self.daily_cancels_warn >= self.max_daily_cancels):
            problems.append(("daily_cancels_warn", f"must be below max_daily_cancels "
                             f"({self.daily_cancels_warn} >= {self.max_daily_cancels})"))
        if (self.cancel_ratio_warn is not None and self.cancel_ratio_limit is not None
                and self.cancel_ratio_warn >= self.cancel_ratio_limit):
            problems.append(("cancel_ratio_warn", f"must be below cancel_ratio_limit "
                             f"({self.cancel_ratio_warn} >= {self.cancel_ratio_limit})"))
        return problems


KEYS: tuple[str, ...] = tuple(AccountLimits.model_fields)


class RiskLimits(BaseModel):
    """The risk table: ``[default]`` and ``[accounts.NAME]``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    default: AccountLimits = AccountLimits()
    accounts: dict[str, AccountLimits] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> RiskLimits:
        for name in self.accounts:
            if not _valid_account(name):
                raise ValueError(f"account name {name!r} is not 1-16 of A-Z a-z 0-9 _ . @ -")
        problems = [(f"{DEFAULT}.{key}", reason) for key, reason in self.default.contradictions()]
        for name in self.accounts:
            problems += [(f"accounts.{name}.{key}", reason)
                         for key, reason in self.limits_of(name).contradictions()]
        if problems:
            raise ValueError("; ".join(f"{key}: {reason}" for key, reason in problems))
        return self

    def knows(self, account: str) -> bool:
        """Whether ``account`` may trade: every account when none is listed."""
        return not self.accounts or account in self.accounts

    def limits_of(self, account: str) -> AccountLimits:
        """The account's effective limits: its table over ``[default]``."""
        table = self.accounts.get(account)
        return self.default if table is None else table.over(self.default)

    def show(self) -> dict[str, dict[str, Any]]:
        """Every table with only the keys it sets, ``default`` first."""
        tables = {DEFAULT: self.default, **self.accounts}
        return {name: table.model_dump(exclude_none=True) for name, table in tables.items()}

    def with_value(self, account: str, key: str, value: object) -> RiskLimits:
        """A copy with ``key`` of ``account``'s table (or ``default``) set to ``value`` (None
        unsets it); LimitError names the key and the reason. Only ``default`` or a listed
        account can be changed: a typo must not create an account (which would refuse every
        other unlisted account from then on)."""
        change = f"(set {account} {key})"
        if key not in KEYS:
            raise LimitError(change, [(key, f"unknown key; expected one of: {', '.join(KEYS)}")])
        if account != DEFAULT and account not in self.accounts:
            known = ", ".join([DEFAULT, *self.accounts])
            raise LimitError(change, [(account, f"no [accounts.{account}] table; one of: {known}")])
        raw = self.show()
        path = DEFAULT if account == DEFAULT else f"accounts.{account}"
        if value is None:
            raw[account].pop(key, None)
        else:
            raw[account][key] = parse_value(change, path, key, value)
        default = raw.pop(DEFAULT)
        return validate({DEFAULT: default, "accounts": raw}, change)


def parse_value(change: str, path: str, key: str, value: object) -> object:
    """A value typed as ``key`` expects it: text from a command line becomes a number;
    anything else is passed on for the model to judge."""
    if not isinstance(value, str):
        return value
    annotation = str(AccountLimits.model_fields[key].annotation)
    try:
        if annotation.startswith("int"):
            return int(value)
        if annotation.startswith("float"):
            return float(value)
    except ValueError:
        kind = "an integer" if annotation.startswith("int") else "a number"
        raise LimitError(change, [(f"{path}.{key}", f"must be {kind} (got {value!r})")]) from None
    return value


def validate(table: dict[str, Any], source: str) -> RiskLimits:
    """The risk table (as parsed from TOML) as RiskLimits; LimitError names each bad key."""
    try:
        return RiskLimits.model_validate(table)
    except ValidationError as exc:
        raise LimitError(source, [_explain(error) for error in exc.errors()]) from None


def load_limits(path: Path) -> RiskLimits:
    """The limits of a TOML file holding just the risk table."""
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LimitError(str(path), [("", "the file does not exist")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LimitError(str(path), [("", f"cannot read the file: {exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise LimitError(str(path), [("", f"TOML syntax error: {exc}")]) from None
    return validate(table, str(path))


def _valid_account(name: str) -> bool:
    return re.fullmatch(ACCOUNT_PATTERN, name) is not None


def _explain(error: Any) -> tuple[str, str]:
    """One pydantic error as (dotted key path, reason with the offending value)."""
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        expected = KEYS if len(error["loc"]) > 1 else tuple(RiskLimits.model_fields)
        return key, f"unknown key; expected one of: {', '.join(expected)}"
    reason = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] not in ("missing", "value_error"):
        reason += f" (got {reprlib.repr(error['input'])})"
    return key, reason

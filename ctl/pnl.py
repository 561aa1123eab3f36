"""``hftctl pnl``: the position book offline, over a trades file and settlement prices."""

from __future__ import annotations

from pathlib import Path

import click

from hft.daemons.refdata.instruments import ProductTable
from hft.daemons.trade.book import PositionBook
from hft.daemons.trade.pnlfile import (
    OUTPUT_COLUMNS,
    PRICE_COLUMNS,
    TRADE_COLUMNS,
    PnlFileError,
    csv_text,
    json_text,
    pnl,
)

_FILE = click.Path(dir_okay=False, path_type=Path)


@click.command("pnl", epilog=f"""\b
Trades CSV header (rows in file order; trading days must not go backwards):
  {','.join(TRADE_COLUMNS)}
  direction buy|sell; offset open|close|close_today|close_yesterday;
  price on the product's tick grid; volume in lots; commission in CNY.
Prices CSV header: {','.join(PRICE_COLUMNS)}
Output columns:
  {','.join(OUTPUT_COLUMNS[:4])},
  {','.join(OUTPUT_COLUMNS[4:10])},
  {','.join(OUTPUT_COLUMNS[10:14])},
  then {','.join(OUTPUT_COLUMNS[14:])} (settlement|last_trade|previous_mark).""")
@click.option("--trades", "trades_path", required=True, type=_FILE, metavar="FILE",
              help="The trades, CSV (header below).")
@click.option("--prices", "prices_path", type=_FILE, metavar="FILE",
              help="Settlement prices per trading day and instrument, CSV (header below).")
@click.option("--format", "output_format", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True, help="CSV with a header, or one JSON object per line.")
def pnl_command(trades_path: Path, prices_path: Path | None, output_format: str) -> None:
    """Positions and PnL per trading day from a trades file, by the live book's rules.

    One row per trading day, account, instrument and direction (long|short) that held a
    position at the day's end or traded that day: end-of-day positions and costs, that day's
    close profits (by date, 逐日盯市, and by trade, 逐笔对冲) and commission, the position
    profits at the day's mark. Lots close first-opened-first; on SHFE/INE close and
    close_yesterday take yesterday's lots and close_today today's, elsewhere any close takes
    yesterday's first. Multipliers and ticks come from the product table. Each day's mark is
    its settlement price; an instrument held without one is marked at its last trade price
    that day (or its previous mark if it did not trade), with a note on stderr. Amounts are
    exact decimals.

    Everything is checked first: a malformed row, an unknown instrument or a close beyond
    the position is refused with FILE:LINE and the reason, nothing is printed, and the exit
    code is 1.
    """
    try:
        report = pnl(trades_path, prices_path, PositionBook(ProductTable.load()))
    except PnlFileError as exc:
        raise click.ClickException(str(exc)) from None
    for note in report.notes:
        click.echo(note, err=True)
    click.echo(csv_text(report) if output_format == "csv" else json_text(report), nl=False)

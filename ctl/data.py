"""``hftctl`` commands on market-data journals: import tick files, print ticks and bars.

Their errors are reported by the CLI's command group (``cli.OneLineErrors``), in one line."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import click

from hft.daemons.engine.barbatch import build_bars
from hft.daemons.engine.bario import CSV_COLUMNS as BAR_COLUMNS
from hft.daemons.engine.bario import bar_rows
from hft.daemons.engine.bartables import Period, parse_period
from hft.daemons.md.csvfile import CSV_COLUMNS, CsvTickError, tick_rows
from hft.daemons.md.history import instrument_ticks, journal_ticks
from hft.daemons.md.importer import import_files
from hft.daemons.refdata.instruments import InstrumentTable, ProductTable
from hft.daemons.runtime.journal import JournalError

journal_option = click.option(
    "--journal", "directory", required=True, metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Journal directory (a daemon's is <home>/journal).")
name_option = click.option("--name", default="md", show_default=True,
                           help="Journal name in the directory (hft_md's sim feed: md-sim).")


@click.command("import-ticks")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@journal_option
@name_option
def import_ticks(files: tuple[Path, ...], directory: Path, name: str) -> None:
    """Import tick CSV files into an md journal, normalized like a live feed.

    FILES have CTP DepthMarketData field names as their header (TradingDay, UpdateTime,
    UpdateMillisec, InstrumentID, LastPrice, Volume, ...); optional columns may be missing.
    Every file is checked before anything is written: a bad file is reported with its line
    and nothing is imported.
    """
    instruments = InstrumentTable(ProductTable.load())
    try:
        result = import_files(list(files), directory, name, instruments,
                              progress=lambda path, n: click.echo(f"read {n} ticks from {path}"))
    except (CsvTickError, JournalError) as exc:
        raise click.ClickException(f"{exc}; nothing was imported") from None
    days = ", ".join(map(str, result.trading_days))
    click.echo(f"imported {result.ticks} ticks into {directory / name} "
               f"(seq {result.first_seq}..{result.last_seq}; trading days {days})")


@click.command("ticks")
@journal_option
@name_option
@click.option("--instrument", required=True, help="Instrument id, e.g. IF2101.")
@click.option("--format", "output_format", type=click.Choice(["csv"]), default="csv",
              show_default=True)
def ticks(directory: Path, name: str, instrument: str, output_format: str) -> None:
    """Print every normalized tick of one instrument, one row each: TradingDay, ActionDay,
    local exchange time with milliseconds, ns timestamp, then the CTP fields (empty = no value)."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    for number, batch in enumerate(instrument_ticks(directory, name, instrument, batch=8192)):
        if number == 0:
            writer.writerow(CSV_COLUMNS)
        writer.writerows(tick_rows(batch))


def _period(ctx: click.Context, param: click.Parameter, value: str) -> Period:
    try:
        return parse_period(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("bars")
@journal_option
@name_option
@click.option("--instrument", required=True, metavar="ID", help="Instrument id, e.g. IF2101.")
@click.option("--period", default="1m", show_default=True, callback=_period,
              help="1m, 5m, 15m, 30m, 1h (any Nm/Nh dividing a day) or 1d (a trading day).")
@click.option("--format", "output_format", type=click.Choice(["csv"]), default="csv",
              show_default=True)
def bars(directory: Path, name: str, instrument: str, period: Period, output_format: str) -> None:
    """Print the bars of one instrument built from an md journal (the batch path): one row
    per bar, labelled by its start on the local clock, daily bars by their trading day."""
    products = ProductTable.load()
    products.product_of(instrument)  # an unknown product is refused before the journal is read
    ticks = journal_ticks(directory, name, instrument)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(BAR_COLUMNS)
    writer.writerows(bar_rows(build_bars(ticks, products, (period,))))

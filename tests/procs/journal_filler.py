"""A journal writer process for the disk-full tests: appends until the disk is full.

Every record carries its own seq in ``volume`` and ``seq * 0.5`` in ``last_price``. When an
append raises JournalFull it prints ``full LAST_SEQ MESSAGE`` and waits for commands on stdin:
``retry`` appends one more record (printing ``appended SEQ`` or ``full ...`` again), ``exit``
closes the journal and exits.
usage: journal_filler.py DIR NAME SEGMENT_RECORDS
"""

import sys

from hft.daemons.runtime.events import EventType, empty
from hft.daemons.runtime.journal import JournalFull, JournalWriter


def append_next(writer: JournalWriter) -> None:
    record = empty(EventType.MARKET_DATA)
    seq = writer.last_seq + 1
    record["volume"] = seq
    record["last_price"] = seq * 0.5
    writer.append(record)


def main() -> None:
    directory, name, segment_records = sys.argv[1], sys.argv[2], int(sys.argv[3])
    writer = JournalWriter(directory, name, segment_records=segment_records, keep_segments=1000)
    try:
        while True:
            append_next(writer)
    except JournalFull as exc:
        print("full", writer.last_seq, exc, flush=True)
    for command in sys.stdin:
        if command.strip() == "exit":
            break
        try:
            append_next(writer)
            print("appended", writer.last_seq, flush=True)
        except JournalFull as exc:
            print("full", writer.last_seq, exc, flush=True)
    writer.close()


if __name__ == "__main__":
    main()

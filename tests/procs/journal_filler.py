"""A journal writer process for the disk-full tests: appends (one record at a time, or in
batches of 1000) until the disk is full.

Every record carries its own seq in ``volume`` and ``seq * 0.5`` in ``last_price``. When an
append raises JournalFull it prints ``full LAST_SEQ MESSAGE`` and waits for commands on stdin:
``retry`` appends one more record (printing ``appended SEQ`` or ``full ...`` again), ``exit``
closes the journal and exits.
usage: journal_filler.py DIR NAME SEGMENT_RECORDS MODE(single|batch)
"""

import sys

import numpy as np

from hft.daemons.runtime.events import EventType, empty
from hft.daemons.runtime.journal import JournalFull, JournalWriter


def append_next(writer: JournalWriter) -> None:
    record = empty(EventType.MARKET_DATA)
    seq = writer.last_seq + 1
    record["volume"] = seq
    record["last_price"] = seq * 0.5
    writer.append(record)


def append_batch(writer: JournalWriter) -> None:
    batch = empty(EventType.MARKET_DATA, 1000)
    seqs = np.arange(writer.last_seq + 1, writer.last_seq + 1 + len(batch))
    batch["volume"] = seqs
    batch["last_price"] = seqs * 0.5
    writer.append_batch(batch)


def main() -> None:
    directory, name, segment_records = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fill = append_batch if sys.argv[4] == "batch" else append_next
    writer = JournalWriter(directory, name, segment_records=segment_records, keep_segments=1000)
    try:
        while True:
            fill(writer)
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

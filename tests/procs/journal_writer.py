"""A journal writer process for the crash tests: appends until killed.

Every record carries its own seq in ``volume`` and ``seq * 0.5`` in ``last_price``, so a
reader can check each record is whole. Prints its starting seq once it is writing; exits after LIMIT records.
usage: journal_writer.py DIR NAME SEGMENT_RECORDS MODE(single|batch|claim) LIMIT
"""

import sys

import numpy as np

from hft.daemons.runtime.events import EventType, empty
from hft.daemons.runtime.journal import JournalWriter


def main() -> None:
    directory, name, segment_records, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    limit = int(sys.argv[5])
    writer = JournalWriter(directory, name, segment_records=segment_records, keep_segments=1000)
    stop_at = writer.last_seq + limit
    print(writer.last_seq + 1, flush=True)
    record = empty(EventType.MARKET_DATA)
    batch = empty(EventType.MARKET_DATA, 37)
    while writer.last_seq < stop_at:
        seq = writer.last_seq + 1
        if mode == "batch":
            seqs = np.arange(seq, seq + len(batch))
            batch["volume"] = seqs
            batch["last_price"] = seqs * 0.5
            writer.append_batch(batch)
        elif mode == "claim":
            slot = writer.claim(EventType.MARKET_DATA)
            slot["volume"] = seq
            slot["last_price"] = seq * 0.5
            writer.commit()
        else:
            record["volume"] = seq
            record["last_price"] = seq * 0.5
            writer.append(record)


if __name__ == "__main__":
    main()

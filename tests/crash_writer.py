"""Child process for the crash test: appends batches forever and prints each
acknowledged (index, entry) as soon as ``append`` has returned."""

from __future__ import annotations

import hashlib
import sys

from ledger.keys import Signer
from ledger.log import Ledger

SIGNER = Signer.from_seed("example.org/crash", hashlib.sha256(b"crash").digest())


def main() -> None:
    path, round_no = sys.argv[1], int(sys.argv[2])
    with Ledger.open(path, signer=SIGNER) as led:
        batch = 0
        while True:
            entries = [f"r{round_no}-b{batch}-e{i}".encode() * 8 for i in range(1 + batch % 50)]
            indexes = led.append(entries)
            out = "".join(f"{i} {e.decode()}\n" for i, e in zip(indexes, entries))
            sys.stdout.write(out)
            sys.stdout.flush()
            batch += 1


if __name__ == "__main__":
    main()

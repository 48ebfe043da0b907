"""Reading an exchange's books for ``carbonledger reconcile`` (the file side;
reconciling against a node is in test_cli and test_reconcile)."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.commands._common import UsageError
from client.commands.reconcile import read_books


def test_books_saved_by_excel_as_csv_utf8_are_read(tmp_path: Path) -> None:
    # Excel's "CSV UTF-8" writes a byte order mark and CRLF line ends.
    books = tmp_path / "books.csv"
    books.write_bytes(b"\xef\xbb\xbfaccount,asset,batch,range,amount\r\nEXCH,gec,B1,200-600,\r\nEXCH,ccer,,,250\r\n")
    rows = read_books(str(books))
    assert [(r.account, r.kind, r.batch, r.start, r.end, r.amount) for r in rows] == [
        ("EXCH", "gec", "B1", 200, 600, 0),
        ("EXCH", "ccer", "", 0, 0, 250),
    ]


def test_a_bad_row_is_named_by_its_line_in_the_file(tmp_path: Path) -> None:
    # Blank lines and a quoted line break come before the bad row: the
    # message names the line an editor shows, not the row count.
    books = tmp_path / "books.csv"
    books.write_text('account,asset,range,amount\n\nEXCH,gec,0-5,\n"EX\nCH",gec,1-2,\n\nEXCH,gec,5-3,\n')
    with pytest.raises(UsageError, match=r"books.csv: line 7: bad range '5-3'"):
        read_books(str(books))

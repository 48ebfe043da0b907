"""Writing the files a node keeps beside its store (witness state, evidence)
so that a crash leaves either the old file or the new one, never half of it."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_durably"]


def write_durably(path: Path, text: str, *, replace: bool = True) -> bool:
    """Write ``text`` to ``path`` through a temporary file, fsync it and its
    directory, and return True.

    With ``replace=False`` an existing ``path`` is never touched: the file is
    linked into place only if the name is free (atomically, so a concurrent
    writer cannot be overwritten either), and False says it was not.
    """
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    if replace:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True

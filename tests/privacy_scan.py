"""Find customer ids (or any strings) in a workspace's files: raw bytes of every file, and
what compression hides, decoded: each Parquet file's values (as text) and each SQLite
database's dump. Used by the privacy tests (`clm forget`, personal data in artifacts)."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

import pyarrow.parquet as pq

PARQUET_MAGIC = b"PAR1"
SQLITE_MAGIC = b"SQLite format 3\x00"


def decoded_text(path: Path) -> bytes:
    """A file's content as text where it is compressed or structured: every value of a
    Parquet file, the dump of a SQLite database; else its bytes."""
    data = path.read_bytes()
    if data[:4] == PARQUET_MAGIC and data[-4:] == PARQUET_MAGIC:
        table = pq.read_table(path)
        return "\n".join(str(v) for column in table.columns for v in column.to_pylist()).encode()
    if data[:16] == SQLITE_MAGIC:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return "\n".join(con.iterdump()).encode()
        finally:
            con.close()
    return b""


def files_holding(root: Path, needles: Iterable[str], skip: Iterable[str] = ()) -> dict[str, list[str]]:
    """Each file under root (relative path; those under a `skip` prefix left out) and the
    needles found in it, in its bytes or its decoded values."""
    wanted = [n for n in dict.fromkeys(needles) if n]
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if not path.is_file() or any(relative.startswith(s) for s in skip):
            continue
        data = path.read_bytes()
        try:
            data += b"\n" + decoded_text(path)
        except Exception:  # a file half in some format: its bytes were searched
            pass
        hits = [n for n in wanted if n.encode() in data]
        if hits:
            found[relative] = hits
    return found

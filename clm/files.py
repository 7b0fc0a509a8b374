"""Files a user gives clm (YAML settings, conf files), read with one clear error for each
way they can be wrong, and files clm writes, written so that a reader never sees half of one."""
from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from clm.errors import ClmError


def write_text_atomically(path: Path, text: str) -> None:
    """Write to a hidden temporary file beside `path` (its folder made if missing), then
    rename it over `path` (atomic on one file system); a failed write leaves `path` as it
    was and no temporary behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def checkpoint_fully(con: sqlite3.Connection, path: Path, tries: int = 50) -> None:
    """Move a database's write-ahead log into its file and empty it (what was deleted is then
    nowhere but zeroed pages); readers in the way are waited for, then refused by name."""
    for _ in range(tries):
        busy, log, moved = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy and log == moved:
            return
        time.sleep(0.1)
    raise ClmError(f"{path}: its write-ahead log could not be emptied (a reader kept it open): stop the API "
                   "(`clm serve`) for a moment and run `clm forget` again.")


def sqlite_damage(path: Path, required_table: str | None = None) -> str | None:
    """What is wrong with a SQLite database file (truncated, overwritten, or without
    `required_table`: emptied), or None if it is sound (or absent). SQLite's own quick
    check, read-only, on the file as it is (immutable: a database in WAL mode gets no -wal
    and -shm files from the look)."""
    if not path.is_file():
        return None
    try:
        uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as conn:
            verdict = str(conn.execute("PRAGMA quick_check").fetchone()[0])
            tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as err:
        return str(err)
    if verdict != "ok":
        return verdict
    if required_table is not None and required_table not in tables:
        return f"it holds no table {required_table}: an emptied file?"
    return None


# What a file system takes: a name of at most 255 bytes, a path of at most 4,095.
NAME_MAX, PATH_MAX = 255, 4095


def check_path_length(path: Path, what: str) -> Path:
    """A path a user gave that no file system takes (a name over 255 bytes) is a ClmError
    naming `what`, not an OSError from the first look at it."""
    long = next((part for part in Path(path).parts if len(part.encode()) > NAME_MAX), None)
    if long is not None:
        raise ClmError(f"{what} {str(path)[:80]}...: the name '{long[:40]}...' has {len(long.encode())} bytes; a file "
                       f"or folder name may have at most {NAME_MAX}. Choose a shorter one.")
    if len(os.fsencode(os.path.abspath(path))) > PATH_MAX:
        raise ClmError(f"{what} {str(path)[:80]}...: the path is longer than the {PATH_MAX} bytes a file system "
                       "takes. Choose a shorter one.")
    return path


def read_text_file(path: Path, what: str) -> str:
    """The text of a UTF-8 file the user gave (`what` names it in errors: "Catalogue",
    "--spark-conf"): a missing or unreadable file, a folder, or bytes that are not UTF-8
    (said with the line and byte) are a ClmError."""
    check_path_length(path, what)
    if path.is_dir():
        raise ClmError(f"{what} {path} is a folder; give the file itself.")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ClmError(f"Cannot read {what} {path}: {err.strerror}.") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ClmError(f"{what} {path} is not UTF-8 text: byte 0x{data[err.start]:02x} at line {line} (byte "
                       f"{err.start}) is not UTF-8. Save the file as UTF-8.") from None


def read_yaml_mapping(path: Path, what: str, expected: str) -> dict[Any, Any]:
    """A YAML file holding a mapping (an empty file is an empty one). A ClmError names
    `what`, the file and the line where the YAML breaks or a key is given twice (YAML
    would keep the last without a word), or says it must be a mapping of `expected`."""
    text = read_text_file(path, what)
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ClmError(f"{what} {path} is not valid YAML{where}: {getattr(err, 'problem', err)}.") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ClmError(f"{what} {path} must be a mapping with {expected}.")
    return raw


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml's SafeLoader, refusing a key given twice in one mapping, and reading a day or a
    time (2024-06-30) as the text it is: clm reads it (`clm.dates`), naming the setting when
    it is no day of the calendar (yaml would fail with a bare 'day is out of range')."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key '{key}' is given twice (lines {seen[key] + 1} and "
                                f"{key_node.start_mark.line + 1}); keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def remove_rows(path: Path, column: str, values: Collection[str], batch_rows: int = 1_000_000) -> int:
    """Rewrite a Parquet file without the rows whose `column` is one of `values` (read and
    written in batches, to a hidden file beside it renamed over it: a reader, or a kill,
    finds the old file or the new one); returns the rows removed. A file without such rows,
    or without the column, is left as it is."""
    source = pq.ParquetFile(path)
    if column not in source.schema_arrow.names:
        return 0
    wanted = pa.array(list(values), type=pa.string())
    found = sum(pc.sum(pc.is_in(batch.column(column).cast(pa.string()), wanted)).as_py() or 0
                for batch in source.iter_batches(batch_size=batch_rows, columns=[column]))
    if not found:
        return 0
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with pq.ParquetWriter(tmp, source.schema_arrow, compression="zstd") as writer:
            for batch in source.iter_batches(batch_size=batch_rows):
                keep = pc.invert(pc.is_in(batch.column(column).cast(pa.string()), wanted))
                writer.write_table(pa.Table.from_batches([batch]).filter(keep))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return int(found)

"""Writing files so that a reader never sees half of one."""
from __future__ import annotations

import os
from pathlib import Path


def write_text_atomically(path: Path, text: str) -> None:
    """Write to a hidden temporary file beside `path`, then rename it over `path` (atomic
    on one file system); a failed write leaves `path` as it was and no temporary behind."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def read_yaml_mapping(path: Path, what: str, expected: str) -> dict:  # type: ignore[type-arg]
    """A YAML file holding a mapping (an empty file is an empty one). A ClmError names
    `what`, the file and the line where the YAML breaks, or says it must be a mapping of
    `expected`."""
    import yaml

    from clm.errors import ClmError

    try:
        text = path.read_text()
    except OSError as err:
        raise ClmError(f"Cannot read {what} {path}: {err.strerror}.") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ClmError(f"{what} {path} is not valid YAML{where}: {getattr(err, 'problem', err)}.") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ClmError(f"{what} {path} must be a mapping with {expected}.")
    return raw

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

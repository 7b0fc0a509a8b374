"""Customers' ids under a key: the erasure record (`clm forget`) and pseudonyms (`clm ingest
--pseudonymise`).

A keyed hash (HMAC-SHA256) of an id can be matched by whoever holds the key and by no one
else: the erasure record lists the forgotten customers that way, so that a later ingest of
an old export drops them without the workspace keeping their ids.

The key is CLM_PRIVACY_KEY (an environment variable: outside the workspace). Without it,
`clm forget` makes a random key once, in WORKSPACE/privacy/key (readable by its owner
only): the record then keeps ids from whoever reads the record alone, not from whoever holds
the whole workspace. The record names its key by a fingerprint, so that another key is
refused instead of matching nothing.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clm.errors import ClmError
from clm.files import write_text_atomically
from clm.workspace import Workspace

KEY_VARIABLE = "CLM_PRIVACY_KEY"
FOLDER = "privacy"
KEY_FILE = "key"
RECORD_FILE = "erased.json"
MIN_KEY_CHARS = 16


def privacy_dir(workspace: Workspace) -> Path:
    return workspace.root / FOLDER


def key_from_environment() -> bytes | None:
    """CLM_PRIVACY_KEY, if set; refused if too short to be a secret."""
    text = os.environ.get(KEY_VARIABLE)
    if text is None:
        return None
    if len(text) < MIN_KEY_CHARS:
        raise ClmError(f"{KEY_VARIABLE} is {len(text)} characters long: use a random secret of at least "
                       f"{MIN_KEY_CHARS} (e.g. `python3 -c 'import secrets; print(secrets.token_hex(32))'`).")
    return text.encode()


def key_id(key: bytes) -> str:
    """A key's fingerprint: names it in the record without revealing it."""
    return hashlib.sha256(b"clm privacy key\0" + key).hexdigest()[:16]


def keyed_hash(key: bytes, customer_id: str) -> str:
    return hmac.new(key, customer_id.encode(), hashlib.sha256).hexdigest()


def keyed_hashes(key: bytes, ids: Iterable[str]) -> list[str]:
    return [keyed_hash(key, str(c)) for c in ids]


def workspace_key(workspace: Workspace, create: bool) -> bytes | None:
    """The key of this workspace's erasure record: CLM_PRIVACY_KEY, else the workspace's own
    key file (made when `create`); None when there is neither."""
    key = key_from_environment()
    if key is not None:
        return key
    path = privacy_dir(workspace) / KEY_FILE
    if path.exists():
        return path.read_bytes()
    if not create:
        return None
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)  # never readable by others, not for a moment
    with os.fdopen(fd, "wb") as out:
        out.write(secrets.token_hex(32).encode())
    tmp.replace(path)
    return path.read_bytes()


@dataclass
class ErasureRecord:
    """The customers forgotten in a workspace, as keyed hashes, and when."""

    key_id: str
    erased: dict[str, str]  # keyed hash -> when (ISO, UTC)

    @staticmethod
    def path(workspace: Workspace) -> Path:
        return privacy_dir(workspace) / RECORD_FILE

    @classmethod
    def read(cls, workspace: Workspace) -> ErasureRecord | None:
        path = cls.path(workspace)
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(str(data["key_id"]), {str(h): str(t) for h, t in data["erased"].items()})
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ClmError(f"The erasure record {path} is damaged ({err}): restore it from a backup; without it a "
                           "later ingest of an old export would bring forgotten customers back.") from None

    def write(self, workspace: Workspace) -> None:
        write_text_atomically(self.path(workspace), json.dumps(
            {"key_id": self.key_id, "erased": dict(sorted(self.erased.items()))}, indent=1))


def checked_key(workspace: Workspace, record: ErasureRecord | None, create: bool) -> bytes | None:
    """The key that matches the record: CLM_PRIVACY_KEY or the workspace's key file, whichever
    the record was made with (None: no record and nothing to create); refused, with what to
    do, when neither is. A key is made only for a workspace without a record."""
    if record is None:
        return workspace_key(workspace, create)
    path = privacy_dir(workspace) / KEY_FILE
    candidates = [key_from_environment(), path.read_bytes() if path.exists() else None]
    for key in candidates:
        if key is not None and key_id(key) == record.key_id:
            return key
    raise ClmError(f"The erasure record {ErasureRecord.path(workspace)} was made with a key that neither "
                   f"{KEY_VARIABLE} nor {path} holds: set {KEY_VARIABLE} to the key `clm forget` used (fingerprint "
                   f"{record.key_id}).")


def record_erasure(workspace: Workspace, ids: Iterable[str], when: pd.Timestamp) -> int:
    """Add the ids to the erasure record (written whole and renamed in); returns how many
    were not recorded before."""
    record = ErasureRecord.read(workspace)
    key = checked_key(workspace, record, create=True)
    assert key is not None
    record = record or ErasureRecord(key_id(key), {})
    new = 0
    for digest in keyed_hashes(key, ids):
        if digest not in record.erased:
            record.erased[digest] = when.isoformat()
            new += 1
    record.write(workspace)
    return new


@dataclass(frozen=True)
class Erased:
    """Which ids the workspace forgot: `mask(ids)` is True for those."""

    key: bytes | None
    hashes: frozenset[str]

    @classmethod
    def of(cls, workspace: Workspace) -> Erased:
        record = ErasureRecord.read(workspace)
        if record is None:
            return cls(None, frozenset())
        return cls(checked_key(workspace, record, create=False), frozenset(record.erased))

    def __bool__(self) -> bool:
        return bool(self.hashes)

    def mask(self, ids: pd.Series) -> np.ndarray:
        """True for the rows whose id was forgotten (each distinct id hashed once)."""
        if not self.hashes or self.key is None:
            return np.zeros(len(ids), dtype=bool)
        distinct = pd.unique(ids.astype(str))
        gone = [c for c, h in zip(distinct, keyed_hashes(self.key, distinct), strict=True) if h in self.hashes]
        return ids.astype(str).isin(gone).to_numpy()


# ------------------------------------------------------------------ pseudonymised ingest
PSEUDONYM_PREFIX = "p-"
PSEUDONYM_HEX = 24  # 96 bits of the keyed hash: no two ids of a base alike in practice


def required_key() -> bytes:
    """CLM_PRIVACY_KEY, which `--pseudonymise` needs (the key stays outside the workspace)."""
    key = key_from_environment()
    if key is None:
        raise ClmError(f"--pseudonymise needs a secret key outside the workspace: set {KEY_VARIABLE} (e.g. `export "
                       f"{KEY_VARIABLE}=$(python3 -c 'import secrets; print(secrets.token_hex(32))')`, kept in your "
                       "secrets store) and run the ingest again. Every later ingest of this workspace needs the same key.")
    return key


def pseudonyms(key: bytes, ids: pd.Series) -> pd.Series:
    """Each id's pseudonym, `p-` and 24 hex digits of its keyed hash (each distinct id hashed once)."""
    text = ids.astype(str)
    distinct = pd.unique(text)
    mapping = {c: PSEUDONYM_PREFIX + h[:PSEUDONYM_HEX] for c, h in zip(distinct, keyed_hashes(key, distinct), strict=True)}
    return text.map(mapping)


EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
# A phone number as exports write one: an international "+44 20 7946 0958", or groups with
# separators "(555) 123-4567", "555.123.4567", "06 12 34 56 78"; 9 to 15 digits. Digits alone (an id), dates
# and IPv4 addresses are not.
PHONE = re.compile(r"^(\+\d[\d\s().-]{7,20}|\(?\d{2,5}\)?[\s.-]\d{2,5}[\s.-]\d{2,5}([\s.-]\d{1,5}){0,2})$")
DATE = re.compile(r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|^\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}$")
OCTET = r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"^{OCTET}(\.{OCTET}){{3}}$")  # "192.168.100.200" has a phone's digits and dots
SAMPLE_ROWS = 1_000


def _looks_like_phone(value: str) -> bool:
    return (bool(PHONE.match(value)) and not DATE.match(value) and not IPV4.match(value)
            and 9 <= sum(ch.isdigit() for ch in value) <= 15)


def personal_kind(values: pd.Series) -> str | None:
    """"e-mail addresses" or "phone numbers" when most of a text column's values (a sample)
    look like them; else None."""
    if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
        return None
    sample = values.dropna().astype(str).str.strip().head(SAMPLE_ROWS)
    if sample.empty:
        return None
    if sample.map(lambda v: bool(EMAIL.match(v))).mean() > 0.5:
        return "e-mail addresses"
    if sample.map(_looks_like_phone).mean() > 0.5:
        return "phone numbers"
    return None

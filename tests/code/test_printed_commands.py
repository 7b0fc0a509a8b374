"""Every command the README or the main job prints runs as printed, from the clone's root
with a plain PATH (no environment activated), as on a fresh machine: `clm serve -w
workspace` was "command not found" there."""
from __future__ import annotations

import json
import re
import shlex
import subprocess

import pytest

from pipelines.servers import free_port, running_server
from tests.clirun import CLONE as ROOT
from tests.clirun import plain_environment


def readme_commands() -> list[str]:
    """The clm commands in the README's code blocks (continued lines joined; a crontab
    line's commands split at `&&`; comments and a trailing `&` left out)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```(?:bash|text|sh)\n(.*?)^```", text, flags=re.S | re.M)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip().removesuffix("&").strip()
            for part in line.split("&&"):
                found = re.search(r"(\S*clm) (.*)", part.strip())
                if found and not found.group(1).startswith("cd"):
                    commands.append(f"{found.group(1)} {found.group(2).strip()}")
    return commands


def test_the_readme_names_clm_as_it_runs_from_the_clone():
    commands = readme_commands()
    assert len(commands) >= 10
    assert [c for c in commands if not c.startswith(".venv/bin/clm ")] == []


@pytest.mark.slow
@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_parses_from_the_clone_with_a_plain_path(command):
    """Each runs from the clone's root without activation: the program is found and its
    subcommand and options exist (`--help` at the end: parsed, not run)."""
    argv = shlex.split(command) + ["--help"]
    done = subprocess.run(argv, cwd=ROOT, env=plain_environment(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{command}\n{done.stdout[-1500:]}{done.stderr[-1500:]}"


def printed_api_commands(output: str) -> tuple[str, str]:
    """The two commands `clm run` ends with: the server's, and the curl line (the output
    comes with its lines joined: `Outcome`)."""
    serve = re.search(r"(\S*clm serve -w \S+)", output)
    curl = re.search(r"(curl -s -X POST \S+/score -H 'content-type: application/json' -d '\{[^']*\}')", output)
    assert serve and curl, output[-1200:]
    return serve.group(1), curl.group(1)


@pytest.mark.slow
def test_the_main_jobs_api_commands_run_as_printed(main_job, tmp_path):
    """The main job ran as the README's first command runs it (`.venv/bin/clm run` from the
    clone's root, plain PATH): its serve command starts the API (on a free port rather than
    3000, which may be taken) and its curl line gets an answer in which an action pays."""
    ws, outcome = main_job
    assert outcome.exit_code == 0, outcome.output[-2000:]
    serve, curl = printed_api_commands(outcome.output)
    assert serve.startswith(".venv/bin/clm serve"), serve
    port = free_port()
    # The printed command (on that port), started and stopped as every test server is.
    with running_server(shlex.split(serve) + ["--port", str(port), "--drain-seconds", "0"],
                        f"http://127.0.0.1:{port}/readyz", tmp_path / "serve.log", plain_environment(), cwd=ROOT):
        done = subprocess.run(["bash", "-c", curl.replace(":3000/", f":{port}/")], cwd=ROOT,
                              env=plain_environment(), capture_output=True, text=True, timeout=60)
    answer = json.loads(done.stdout)
    assert answer["actions"] and answer["actions"][0]["action"] != "none", answer
    assert answer["actions"][0]["expected_value"] > 0, answer

"""Running a command in its own process, measured: wall seconds and peak memory (RSS of the
process and its children, sampled every 20 ms)."""
from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass
class Measured:
    wall_s: float
    peak_gb: float
    returncode: int
    stdout: str
    stderr: str


def run_measured(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
                 on_line: Callable[[str, float], None] | None = None) -> Measured:
    """on_line: called with each line of the output (stderr merged into stdout) and the
    seconds since the start, as the line comes."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT if on_line else subprocess.PIPE,
                            text=True, env=env, cwd=cwd)
    watched = psutil.Process(proc.pid)
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                rss = watched.memory_info().rss + sum(c.memory_info().rss for c in watched.children(recursive=True))
                peak = max(peak, rss)
            except psutil.Error:
                pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    if on_line is None:
        out, err = proc.communicate()
    else:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            on_line(line, time.perf_counter() - started)
            lines.append(line)
        proc.wait()
        out, err = "".join(lines), ""
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    return Measured(wall, peak / 1e9, proc.returncode, out, err)

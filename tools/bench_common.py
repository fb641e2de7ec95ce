"""Helpers shared by the benchmark scripts: the machine they ran on and markdown tables."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from lite_csms.net.ports import read_ports_file

Cell = str | int | float


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_summary(packages: Sequence[str]) -> str:
    """One markdown line per fact, so a table of numbers always says where it came from."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = ", ".join(f"{name} {package_version(name)}" for name in packages)
    return "\n".join([
        f"- CPU: {cpu_model()}, {cores} cores usable (nproc)",
        f"- Python {platform.python_version()} ({sys.implementation.name}) on "
        f"{platform.system()} {platform.release()}",
        f"- packages: {versions}",
    ])


def format_cell(value: Cell) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return value


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[Cell]], *, label_columns: int = 1
) -> str:
    """The first `label_columns` columns are text; the rest are numbers, right-aligned."""
    alignments = [" --- " if i < label_columns else " ---: " for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(alignments) + "|"]
    lines.extend("| " + " | ".join(format_cell(cell) for cell in row) + " |" for row in rows)
    return "\n".join(lines)


@contextmanager
def serving(env: Mapping[str, str], workdir: Path, start_timeout: float = 20.0,
            priority: int | None = None) -> Iterator[Served]:
    """`lite-csms serve` as a subprocess with `env`, logging to `workdir`/server.log.

    It listens on ports the kernel picks (port 0), which it writes to a ports file, so no
    other process can take them between choosing and binding. Yields once it listens;
    raises RuntimeError with the log when it exits or does not listen within
    `start_timeout` seconds. Terminated (killed after 15 s) on the way out, so a graceful
    stop flushes the server's counts.
    """
    log = (workdir / "server.log").open("wb")
    ports_file = workdir / "ports.json"
    ports_file.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "lite_csms", "serve", "--ports-file", str(ports_file)],
        env={**env, "LITE_CSMS_PORT": "0", "LITE_CSMS_ADMIN_PORT": "0"},
        stdout=log, stderr=subprocess.STDOUT)
    if priority is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, process.pid, priority)
        except OSError:
            pass  # not root: the server keeps the caller's priority
    try:
        try:
            ports = read_ports_file(ports_file, start_timeout,
                                    alive=lambda: process.poll() is None)
        except (RuntimeError, TimeoutError):
            raise RuntimeError((workdir / "server.log").read_text()) from None
        yield Served(process, ports["ocpp"][0], ports["admin"])
    finally:
        terminate(process, 15)
        log.close()


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    admin_port: int | None


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """A process's resident set (VmRSS of /proc/PID/status), KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS line")


def cpu_seconds(pid: int) -> float:
    """User + system seconds of every thread of a process (lite-csms's SQLite writer
    included), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # Fields after the parenthesised command name; utime and stime are 14 and 15.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM (a graceful stop flushes the server's counts), SIGKILL after `timeout` s."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

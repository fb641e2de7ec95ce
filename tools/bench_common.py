"""Helpers shared by the benchmark scripts: the machine they ran on and markdown tables."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata

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

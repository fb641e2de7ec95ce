"""Byte sizes as people write and read them: decimal units (kB, MB, GB) and binary (KiB...)."""

from __future__ import annotations

import re

# Decimal, as SIM contracts count: 1 MB = 1,000,000 bytes. KiB/MiB/GiB for those who mean 2^n.
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-zA-Z]*)\s*")


def parse_size(value: str | int) -> int:
    """'20MB', '500kB', '1.5GB', '2 MiB' or '25000000' (bytes) as a positive byte count."""
    if isinstance(value, bool):
        raise ValueError(f"size {value!r} is not a number of bytes")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.fullmatch(value)
        unit = _UNITS.get(match.group(2).lower()) if match else None
        if match is None or unit is None:
            raise ValueError(f"size {value!r} is not like 20MB, 500kB, 1.5GB, 2MiB or 25000000")
        size = round(float(match.group(1)) * unit)
    if size <= 0:
        raise ValueError(f"size {value!r} must be more than zero bytes")
    return size


def format_size(size: float) -> str:
    """One decimal in kB or MB (GB past 10,000 MB); plain bytes below 1 kB."""
    magnitude = abs(size)
    if magnitude < 1000:
        return f"{size:.0f} B"
    if magnitude < 1000**2:
        return f"{size / 1000:.1f} kB"
    if magnitude < 10 * 1000**3:
        return f"{size / 1000**2:.1f} MB"
    return f"{size / 1000**3:.1f} GB"

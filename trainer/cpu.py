"""What the training CPU can do, read from /proc/cpuinfo. Where that file is missing, nothing is known."""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 AVX-512/AMX; Arm's Features list


def lacks_bfloat16(cpuinfo: Path = CPUINFO) -> bool:
    """True when the CPU's feature list is known and names no bfloat16 instructions."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return not BFLOAT16_FLAGS & set(value.split())
    return False

"""What the training CPU can do, read from /proc/cpuinfo. Where that file is missing, nothing is known."""

from __future__ import annotations

from pathlib import Path

from edge.bench import CPUINFO, cpu_info

BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 AVX-512/AMX; Arm's Features list


def lacks_bfloat16(cpuinfo: Path = CPUINFO) -> bool:
    """True when the CPU's feature list is known and names no bfloat16 instructions."""
    _, flags = cpu_info(cpuinfo)
    return flags is not None and not BFLOAT16_FLAGS & flags

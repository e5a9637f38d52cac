"""The bfloat16 check reads the CPU's feature list; unknown CPUs are not warned about."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.cpu import lacks_bfloat16

ZEN3 = "processor\t: 0\nflags\t\t: fpu sse4_2 avx fma avx2 bmi2\n"
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
NEOVERSE_V1 = "processor\t: 0\nFeatures\t: fp asimd sve asimddp bf16 i8mm\n"
CORTEX_A72 = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"


@pytest.mark.parametrize(("cpuinfo", "lacks"), [(ZEN3, True), (SAPPHIRE_RAPIDS, False), (NEOVERSE_V1, False),
                                                (CORTEX_A72, True), ("processor\t: 0\n", False)])
def test_feature_list_decides(tmp_path: Path, cpuinfo: str, lacks: bool) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert lacks_bfloat16(path) is lacks


def test_missing_cpuinfo_is_unknown(tmp_path: Path) -> None:
    assert lacks_bfloat16(tmp_path / "missing") is False

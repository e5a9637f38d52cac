"""`fer-edge bench`: the report of a replay run, as JSON and as a rich table.

A comparison with another implementation (issue 6's `--compare-peer`) adds its figures to `BenchReport`
as one more field and one more table row; the measuring itself is the pipeline's `Summary.measured`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from rich.table import Table

from edge.config import Config
from edge.pipeline import Summary

STAGES = ("decode", "detect", "preprocess", "classify", "track", "publish", "e2e")


@dataclass(frozen=True, slots=True)
class BenchReport:
    source: str
    detector: str
    model: str
    warmup: int
    frames: int
    faces: int
    fps: float
    wall_s: float
    cpu_percent: float  # process CPU time over wall time; 100 = one core
    cpu_count: int | None
    rss_mb: float
    drops: int
    latency_ms: dict[str, dict[str, float]]

    @classmethod
    def of(cls, summary: Summary, config: Config, warmup: int) -> BenchReport:
        measured, stats = summary.measured, summary.stats
        return cls(
            source=config.source.source, detector=config.detector.backend, model=config.classifier.model.name,
            warmup=warmup, frames=measured.frames, faces=measured.faces, fps=round(measured.fps, 2),
            wall_s=round(measured.wall_s, 3), cpu_percent=round(measured.cpu_percent, 1),
            cpu_count=stats.get("cpu_count"), rss_mb=stats["rss_mb"], drops=summary.drops,
            latency_ms={stage: stats["latency_ms"][stage] for stage in STAGES if stage in stats["latency_ms"]})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> Table:
        title = (f"{self.source}: {self.frames} frames after {self.warmup} warm-up, {self.fps:.1f} FPS, "
                 f"CPU {self.cpu_percent:.0f}% of one core ({self.cpu_count} cores), RSS {self.rss_mb:.0f} MB, "
                 f"{self.faces} faces, {self.drops} dropped")
        table = Table(title=title, caption=f"detector {self.detector}, model {self.model}; latency in ms; "
                                           "e2e = capture to publish")
        table.add_column("stage")
        for column in ("p50", "p95", "p99", "mean", "samples"):
            table.add_column(column, justify="right")
        for stage, values in self.latency_ms.items():
            table.add_row(stage, *(f"{values[k]:.2f}" for k in ("p50", "p95", "p99", "mean")),
                          str(values["count"]))
        return table

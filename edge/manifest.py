"""The model contract shared by trainer and daemon: `<name>.json` beside `<name>.tflite`.

The float input is `pixel * scale + offset` on the grey (or colour) crop of `height`×`width`;
the model's own input quantization then applies. Outputs are per-label scores in `labels` order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edge.errors import UserError

FER2013_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@dataclass(frozen=True, slots=True)
class InputSpec:
    height: int = 48
    width: int = 48
    channels: int = 1
    color: Literal["gray", "rgb"] = "gray"
    scale: float = 1.0
    offset: float = 0.0

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """Float model input from uint8 pixels, exactly as the manifest declares."""
        return pixels.astype(np.float32) * np.float32(self.scale) + np.float32(self.offset)


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    labels: tuple[str, ...]
    input: InputSpec
    sha256: str
    architecture: str = ""
    trained_on: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        data["labels"] = list(self.labels)
        data.update(data.pop("extra"))
        return json.dumps(data, indent=2) + "\n"


def manifest_path(model: Path) -> Path:
    return model.with_suffix(".json")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_manifest(model: Path, *, verify_digest: bool = True) -> Manifest:
    """Read and validate the manifest beside `model`; raise UserError naming the file and the problem."""
    path = manifest_path(model)
    if not model.is_file():
        raise UserError(f"{model}: model file not found")
    if not path.is_file():
        raise UserError(f"{path}: manifest not found (expected beside {model.name})")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    labels = data.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
        raise UserError(f"{path}: labels: expected a non-empty list of names, got {labels!r}")
    spec = data.get("input")
    if not isinstance(spec, dict):
        raise UserError(f"{path}: input: expected an object with height, width, channels, color, scale, offset")
    try:
        input_spec = InputSpec(
            height=int(spec["height"]), width=int(spec["width"]), channels=int(spec["channels"]),
            color=spec.get("color", "gray"), scale=float(spec["scale"]), offset=float(spec["offset"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: input: missing or invalid field {exc}") from None
    if input_spec.color not in ("gray", "rgb") or input_spec.channels != (1 if input_spec.color == "gray" else 3):
        raise UserError(f"{path}: input: color {input_spec.color!r} does not match channels {input_spec.channels}")
    digest = data.get("sha256")
    if not isinstance(digest, str):
        raise UserError(f"{path}: sha256: expected the hex digest of {model.name}")
    if verify_digest and sha256_of(model) != digest:
        raise UserError(f"{model}: sha256 {sha256_of(model)[:12]}… does not match manifest {digest[:12]}…")
    known = {"name", "labels", "input", "sha256", "architecture", "trained_on", "metrics"}
    return Manifest(
        name=str(data.get("name", model.stem)), labels=tuple(labels), input=input_spec, sha256=digest,
        architecture=str(data.get("architecture", "")), trained_on=str(data.get("trained_on", "")),
        metrics=dict(data.get("metrics") or {}), extra={k: v for k, v in data.items() if k not in known},
    )

"""Emotion classification: a .tflite model and its manifest, int8 in and out, every face of a frame in one call.

`preprocess` is the one declaration of the model input, shared with the trainer's TFLite evaluation:
crop (BGR or gray) → gray or RGB per manifest → resize (INTER_AREA) → `InputSpec.normalize` → quantize.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.errors import UserError
from edge.manifest import InputSpec, Manifest, load_manifest, manifest_path


def _litert() -> type:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter


def _tflite_runtime() -> type:
    from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]

    return Interpreter


def _tensorflow() -> type:
    import tensorflow as tf

    return tf.lite.Interpreter


# Tried in this order by runtime "auto"; the first that imports wins.
RUNTIMES: dict[str, Callable[[], type]] = {
    "ai_edge_litert": _litert, "tflite_runtime": _tflite_runtime, "tensorflow": _tensorflow}


def interpreter_class(runtime: str = "auto") -> tuple[str, type]:
    """The (name, Interpreter class) of the requested runtime, or of the first importable one for "auto"."""
    for name in RUNTIMES if runtime == "auto" else [runtime]:
        try:
            return name, RUNTIMES[name]()
        except ImportError:
            continue
    wanted = "any of " + ", ".join(RUNTIMES) if runtime == "auto" else runtime
    raise UserError(f"no TFLite runtime: cannot import {wanted} (install ai-edge-litert)")


@dataclass(frozen=True, slots=True)
class TensorQuant:
    """A tensor's dtype and affine quantization (real = scale × (q − zero_point)); scale 0 means float."""

    dtype: type
    scale: float = 0.0
    zero_point: int = 0

    @classmethod
    def of(cls, details: dict[str, Any]) -> TensorQuant:
        scale, zero_point = details["quantization"]
        return cls(dtype=details["dtype"], scale=float(scale), zero_point=int(zero_point))

    @property
    def is_integer(self) -> bool:
        return np.issubdtype(self.dtype, np.integer)

    def quantize(self, values: np.ndarray) -> np.ndarray:
        if not self.is_integer:
            return values.astype(self.dtype)
        info = np.iinfo(self.dtype)
        scaled = np.round(values / np.float32(self.scale)) + self.zero_point
        return np.clip(scaled, info.min, info.max).astype(self.dtype)

    def dequantize(self, values: np.ndarray) -> np.ndarray:
        if not self.is_integer:
            return values.astype(np.float32)
        return (values.astype(np.float32) - self.zero_point) * np.float32(self.scale)


_TO_GRAY = {3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}
_TO_RGB = {3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}


def preprocess(crops: Sequence[np.ndarray], spec: InputSpec, quant: TensorQuant | None = None) -> np.ndarray:
    """The model input (n, height, width, channels) for uint8 face crops: BGR, BGRA or already gray (2-D).

    Float32 `pixel × scale + offset` as the manifest declares, then quantized when `quant` is an
    integer tensor's quantization.
    """
    pixels = np.empty((len(crops), spec.height, spec.width, spec.channels), dtype=np.uint8)
    for i, crop in enumerate(crops):
        image = crop[:, :, 0] if crop.ndim == 3 and crop.shape[2] == 1 else crop
        channels = 1 if image.ndim == 2 else image.shape[2] if image.ndim == 3 else 0
        if image.dtype != np.uint8 or image.size == 0 or channels not in (1, 3, 4):
            raise ValueError(f"crops[{i}]: expected a non-empty uint8 gray, BGR or BGRA image, "
                             f"got shape {crop.shape} dtype {crop.dtype}")
        if spec.color == "gray":
            image = image if channels == 1 else cv2.cvtColor(image, _TO_GRAY[channels])
        else:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if channels == 1 else cv2.cvtColor(
                image, _TO_RGB[channels])
        resized = cv2.resize(image, (spec.width, spec.height), interpolation=cv2.INTER_AREA)
        pixels[i] = resized.reshape(spec.height, spec.width, spec.channels)
    values = spec.normalize(pixels)
    return quant.quantize(values) if quant is not None else values


def to_probabilities(scores: np.ndarray) -> np.ndarray:
    """Rows that already look like probabilities (≥ 0, summing to 1 ± 0.05) are renormalised; others
    get a softmax. The trainer's models end in softmax, so int8 rounding is all that is corrected."""
    if scores.size and np.all(scores >= 0) and np.all(np.abs(scores.sum(axis=1) - 1.0) <= 0.05):
        return (scores / scores.sum(axis=1, keepdims=True)).astype(np.float32)
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True, slots=True)
class ClassifierOptions:
    """`model` is the .tflite file; its manifest `<model>.json` sits beside it. `max_batch` bounds one call."""

    model: Path
    threads: int = 1
    runtime: str = "auto"
    max_batch: int = 32

    def __post_init__(self) -> None:
        checks = [
            ("threads", 1 <= self.threads <= 64, "1-64"),
            ("runtime", self.runtime == "auto" or self.runtime in RUNTIMES, f"'auto' or one of {list(RUNTIMES)}"),
            ("max_batch", 1 <= self.max_batch <= 1024, "1-1024"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"classifier.{name}: expected {allowed}, got {getattr(self, name)!r}")


class EmotionClassifier:
    """Per-label probabilities for face crops. Not thread-safe: one instance per thread."""

    def __init__(self, options: ClassifierOptions) -> None:
        model = options.model
        self.manifest: Manifest = load_manifest(model)  # missing files, bad JSON, labels, sha256
        self.runtime, interpreter = interpreter_class(options.runtime)
        try:
            self._interpreter = interpreter(model_path=str(model), num_threads=options.threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            reason = (str(exc).strip().splitlines() or ["unreadable"])[0]
            raise UserError(f"{model}: not a valid TFLite model ({reason})") from None
        self._input, self._output = self._interpreter.get_input_details()[0], self._interpreter.get_output_details()[0]
        self._check_contract(model)
        self._in_quant, self._out_quant = TensorQuant.of(self._input), TensorQuant.of(self._output)
        self._batch, self._batching, self._max_batch = 1, True, options.max_batch

    def _check_contract(self, model: Path) -> None:
        """The model must be what its manifest says: input shape, number of labels, int8 where claimed."""
        spec, labels, json_name = self.manifest.input, self.manifest.labels, manifest_path(model).name
        shape = tuple(int(v) for v in self._input["shape"])
        out_shape = tuple(int(v) for v in self._output["shape"])
        if len(shape) != 4 or shape[1:] != (spec.height, spec.width, spec.channels):
            raise UserError(f"{model}: input shape {list(shape)} does not match {json_name} "
                            f"(height {spec.height}, width {spec.width}, channels {spec.channels})")
        if len(out_shape) != 2 or out_shape[1] != len(labels):
            raise UserError(f"{model}: output shape {list(out_shape)} does not match the {len(labels)} labels "
                            f"in {json_name}")
        if self.manifest.extra.get("quantization") == "int8":
            dtypes = {np.dtype(self._input["dtype"]).name, np.dtype(self._output["dtype"]).name}
            if dtypes != {"int8"}:
                raise UserError(f"{model}: {json_name} says int8 but the model's input/output are "
                                f"{'/'.join(sorted(dtypes))}")

    @classmethod
    def create(cls, options: ClassifierOptions) -> EmotionClassifier:
        return cls(options)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    @property
    def batched(self) -> bool:
        """False once the model refused a batch resize; every face then costs its own invoke."""
        return self._batching

    def classify(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """(n, len(labels)) float32 probabilities for n face crops, in one invoke per `max_batch` faces."""
        return self.infer(self.prepare(crops))

    def prepare(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """The model input for `crops` (`preprocess`); `classify` = `infer(prepare(crops))`, split so that
        the pipeline can time the two stages apart."""
        spec, quant = self.manifest.input, self._in_quant if self._in_quant.is_integer else None
        if not crops:
            return np.zeros((0, spec.height, spec.width, spec.channels), dtype=quant.dtype if quant else np.float32)
        return preprocess(crops, spec, quant)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(n, len(labels)) float32 probabilities for a batch from `prepare`."""
        if not len(batch):
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        scores = np.concatenate([self._invoke(batch[i:i + self._max_batch])
                                 for i in range(0, len(batch), self._max_batch)])
        return to_probabilities(scores)

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) != self._batch and not self._resize(len(batch)):
            return np.concatenate([self._invoke(batch[i:i + 1]) for i in range(len(batch))])
        self._interpreter.set_tensor(self._input["index"], batch)
        self._interpreter.invoke()
        return self._out_quant.dequantize(self._interpreter.get_tensor(self._output["index"]))

    def _resize(self, size: int) -> bool:
        """Resize the batch dimension (only when the face count changes); False if the model refuses."""
        if not self._batching and size != 1:
            return False
        index, shape = self._input["index"], list(self._input["shape"])
        try:
            self._interpreter.resize_tensor_input(index, [size, *shape[1:]])
            self._interpreter.allocate_tensors()
            out_shape = tuple(int(v) for v in self._interpreter.get_output_details()[0]["shape"])
            if out_shape != (size, len(self.labels)):
                raise ValueError(f"output shape {out_shape} after resizing to {size}")
        except (ValueError, RuntimeError):
            self._batching = False  # a fixed-batch model: fall back to one face per call
            self._interpreter.resize_tensor_input(index, [1, *shape[1:]])
            self._interpreter.allocate_tensors()
            self._batch = 1
            return size == 1
        self._batch = size
        return True

    def close(self) -> None:
        self._interpreter = None  # the runtimes free their buffers when the interpreter is collected

    def __enter__(self) -> EmotionClassifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Typed daemon configuration loaded from TOML; every error is one line naming the key path.

Relative paths written in a config file are relative to that file's folder. Defaults are relative to
edge.paths.ROOT, where the shipped config.toml and models/ live: the checkout, or the installed share/fer-edge.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from edge.errors import UserError
from edge.paths import MODELS, ROOT

PATH_KEYS = {("classifier", "model"), ("detector", "model"),
             ("mqtt", "tls_ca"), ("mqtt", "tls_cert"), ("mqtt", "tls_key")}
_TOPIC_SEGMENT = re.compile(r"^[^/+#\s]*$")


def _resolve(value: object) -> object:
    """'' means unset; a relative path is taken from ROOT (file values arrive absolute)."""
    if value == "":
        return None
    if isinstance(value, str):
        path = Path(value).expanduser()
        return path if path.is_absolute() else ROOT / path
    return value


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DeviceConfig(Section):
    name: str = Field("", validate_default=True)  # "" becomes the host name

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _TOPIC_SEGMENT.match(value):
            raise ValueError(f"must not contain '/', '+', '#' or spaces, got {json.dumps(value)}")
        return value or socket.gethostname()


class SourceConfig(Section):
    source: str = "demo"
    fps: float = Field(15.0, gt=0, le=120)
    loop: bool = False
    reconnect_min_s: float = Field(1.0, gt=0, le=60)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)
    stall_timeout_s: float = Field(10.0, gt=0, le=600)

    @model_validator(mode="after")
    def _backoff(self) -> SourceConfig:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(
                f"reconnect_min_s {self.reconnect_min_s} exceeds reconnect_max_s {self.reconnect_max_s}")
        return self


class DetectorConfig(Section):
    backend: Literal["blazeface", "blazeface-tasks", "haar"] = "blazeface"
    model: Path | None = None  # None: the backend's own model (edge.detect.DEFAULT_MODELS)
    min_face_size: int = Field(24, ge=8, le=1024)
    score_threshold: float = Field(0.5, ge=0, le=1)
    margin: float = Field(0.1, ge=0, le=1)
    detect_width: int = Field(640, ge=0, le=8192)
    tiles: int = Field(1, ge=1, le=4)
    detect_every: int = Field(2, ge=1, le=30)
    haar_width: int = Field(320, ge=0, le=8192)

    @field_validator("detect_width", "haar_width")
    @classmethod
    def _width(cls, value: int) -> int:
        if 0 < value < 64:
            raise ValueError(f"expected 0 (off) or an integer 64-8192, got {value}")
        return value

    @field_validator("model", mode="before")
    @classmethod
    def _path(cls, value: object) -> object:
        return _resolve(value)


DEFAULT_MODEL = MODELS / "fer_cnn_int8.tflite"


class ClassifierConfig(Section):
    model: Path = DEFAULT_MODEL  # "" in a file also means this shipped model
    threads: int = Field(1, ge=1, le=16)
    classify_every: int = Field(1, ge=1, le=30)

    @field_validator("model", mode="before")
    @classmethod
    def _path(cls, value: object) -> object:
        resolved = _resolve(value)
        return DEFAULT_MODEL if resolved is None else resolved


class TrackerConfig(Section):
    iou_threshold: float = Field(0.3, gt=0, le=1)
    min_hits: int = Field(3, ge=1, le=100)
    max_age: int = Field(15, ge=0, le=1000)


class SmootherConfig(Section):
    alpha: float = Field(0.3, gt=0, le=1)
    margin: float = Field(0.1, ge=0, le=1)
    min_dwell_s: float = Field(0.5, ge=0, le=60)


class MqttConfig(Section):
    enabled: bool = True
    host: str = Field("localhost", min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = Field("fer", min_length=1)
    qos: int = Field(1, ge=0, le=2)
    username: str = ""
    password: str = ""
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_insecure: bool = False
    keepalive: int = Field(30, ge=5, le=3600)
    reconnect_min_s: float = Field(1.0, gt=0, le=60)
    reconnect_max_s: float = Field(60.0, gt=0, le=3600)
    buffer_size: int = Field(1000, ge=1, le=1_000_000)
    flush_timeout: float = Field(30.0, ge=0, le=3600)
    stats_interval: float = Field(30.0, ge=1, le=86400)
    discovery: bool = False
    discovery_prefix: str = Field("homeassistant", min_length=1)
    publish_images: bool = False

    @field_validator("tls_ca", "tls_cert", "tls_key", mode="before")
    @classmethod
    def _paths(cls, value: object) -> object:
        return _resolve(value)

    @field_validator("topic_prefix", "discovery_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if "+" in value or "#" in value or value.startswith("/") or value.endswith("/"):
            raise ValueError(f"must be a topic without wildcards or outer '/', got {json.dumps(value)}")
        return value

    @field_validator("tls_ca", "tls_cert", "tls_key")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                with value.open("rb") as handle:
                    handle.read(1)
            except OSError as exc:
                raise ValueError(f"cannot read {value} ({exc.strerror or exc})") from None
        return value

    @model_validator(mode="after")
    def _pairs(self) -> MqttConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(
                f"reconnect_min_s {self.reconnect_min_s} exceeds reconnect_max_s {self.reconnect_max_s}")
        return self


class ServiceConfig(Section):
    watchdog: bool = True


class StatsConfig(Section):
    samples: int = Field(512, ge=16, le=100_000)
    fps_window_s: float = Field(5.0, gt=0, le=600)


class LogConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(Section):
    device: DeviceConfig = DeviceConfig()
    source: SourceConfig = SourceConfig()
    detector: DetectorConfig = DetectorConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    tracker: TrackerConfig = TrackerConfig()
    smoother: SmootherConfig = SmootherConfig()
    mqtt: MqttConfig = MqttConfig()
    service: ServiceConfig = ServiceConfig()
    stats: StatsConfig = StatsConfig()
    log: LogConfig = LogConfig()


# Command-line flags and the keys they override.
CLI_OVERRIDES = {
    "source": "source.source", "mqtt_host": "mqtt.host", "mqtt_port": "mqtt.port", "fps": "source.fps",
    "model": "classifier.model", "detector": "detector.backend",
}


def load_config(path: Path | None, overrides: Mapping[str, object] | None = None) -> Config:
    """Read `path` (None: defaults only), apply dotted-key `overrides`, validate; raise UserError."""
    where = str(path) if path is not None else "defaults"
    data: dict[str, Any] = _read(path) if path is not None else {}
    for dotted, value in (overrides or {}).items():
        if value is not None:
            section, _, key = dotted.partition(".")
            table = data.setdefault(section, {})
            if isinstance(table, dict):
                table[key] = _coerce(section, key, value)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{where}: {_describe(exc.errors()[0])}") from None


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.match(r"(.*) \(at (?:line (\d+), column (\d+)|end of document)\)$", str(exc))
        reason, line, column = match.groups() if match else (str(exc), None, None)
        line = line or str(text.count("\n") + 1)
        detail = f"{reason[:1].lower()}{reason[1:]}" + (f" (column {column})" if column else "")
        raise UserError(f"{path}: line {line}: {detail}") from None
    for section, key in PATH_KEYS:  # paths written in the file are relative to the file
        table = data.get(section)
        if isinstance(table, dict) and isinstance(table.get(key), str) and table[key]:
            value = Path(table[key]).expanduser()
            table[key] = str(value if value.is_absolute() else path.resolve().parent / value)
    return data


def _field(loc: tuple[int | str, ...]) -> tuple[Any, tuple[str, ...]]:
    """The pydantic FieldInfo of the longest prefix of `loc` that names a field, and that prefix."""
    model: Any = Config
    info, path = None, ()
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not isinstance(part, str) or not fields or part not in fields:
            break
        info, path = fields[part], (*path, part)
        model = info.annotation
    return info, path


def _coerce(section: str, key: str, value: object) -> object:
    """Command-line text becomes the field's type where it parses; otherwise validation reports it."""
    info, _ = _field((section, key))
    kind = info.annotation if info is not None else None
    if isinstance(value, str) and kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(value)
    return value


def _expected(info: Any) -> str:
    annotation = info.annotation
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(json.dumps(v) for v in get_args(annotation))
    if get_origin(annotation) in (Union, types.UnionType) or annotation is Path:
        return "a file path or \"\""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a table"
    nouns = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    noun = nouns.get(annotation, "a value")
    bounds = {type(m): getattr(m, type(m).__name__.lower()) for m in info.metadata
              if isinstance(m, Ge | Gt | Le | Lt)}
    low = bounds.get(Ge, bounds.get(Gt))
    high = bounds.get(Le, bounds.get(Lt))
    if low is not None and high is not None and Gt not in bounds and Lt not in bounds:
        return f"{noun} {low}-{high}"
    operators = ((Gt, ">"), (Ge, ">="), (Lt, "<"), (Le, "<="))
    parts = [f"{op} {bounds[kind]}" for kind, op in operators if kind in bounds]
    return f"{noun} {' and '.join(parts)}".strip()


def _shown(value: object) -> str:
    if isinstance(value, dict):
        return "a table"
    try:
        return json.dumps(value)
    except TypeError:
        return str(value)


def _describe(error: ErrorDetails) -> str:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{'.'.join(map(str, loc))}: unknown key"
    info, path = _field(loc)
    key = ".".join(path) or "(top level)"
    if error["type"] == "value_error":
        return f"{key}: {error['ctx']['error']}"
    if info is None:
        return f"{key}: {error['msg']}"
    if error["type"] == "string_too_short":
        return f"{key}: expected a non-empty string, got \"\""
    return f"{key}: expected {_expected(info)}, got {_shown(error['input'])}"

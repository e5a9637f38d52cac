"""Config loading: the shipped file is the defaults, and every bad input is one line naming the key."""

from __future__ import annotations

import os
import re
import socket
import tomllib
from pathlib import Path

import pytest

from edge.config import CLI_OVERRIDES, ROOT, Config, load_config
from edge.errors import UserError
from tests.shared import REPO


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def error_of(path: Path | None, overrides: dict[str, object] | None = None) -> str:
    with pytest.raises(UserError) as info:
        load_config(path, overrides or {})
    message = str(info.value)
    assert "\n" not in message
    return message


def test_shipped_config_loads_to_exactly_the_defaults() -> None:
    assert load_config(REPO / "config.toml", {}) == Config()
    assert load_config(None, {}) == Config()


def test_every_key_in_the_shipped_file_is_documented_by_a_comment() -> None:
    lines = (REPO / "config.toml").read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^\w+ = ", line):
            above = lines[number - 1]
            assert above.startswith("#") or re.match(r"^\w+ = ", above), f"undocumented: {line}"


def test_shipped_file_names_every_model_field() -> None:
    data = tomllib.loads((REPO / "config.toml").read_text())
    for section, info in Config.model_fields.items():
        assert set(data[section]) == set(info.annotation.model_fields), section


def test_defaults_name_the_host_and_the_shipped_model() -> None:
    config = Config()
    assert config.device.name == socket.gethostname()
    assert config.classifier.model == ROOT / "models" / "fer_cnn_int8.tflite"
    assert config.mqtt.qos == 1 and config.mqtt.flush_timeout == 30 and not config.mqtt.publish_images


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[mqtt]\ncolour = 'red'\n", "mqtt.colour: unknown key"),
        ("[camera]\nindex = 0\n", "camera: unknown key"),
        ("[mqtt]\nport = \"abc\"\n", 'mqtt.port: expected an integer 1-65535, got "abc"'),
        ("[mqtt]\nport = 70000\n", "mqtt.port: expected an integer 1-65535, got 70000"),
        ("[mqtt]\nport = 0\n", "mqtt.port: expected an integer 1-65535, got 0"),
        ("[mqtt]\nport = 1883.5\n", "mqtt.port: expected an integer 1-65535, got 1883.5"),
        ("[mqtt]\nqos = 3\n", "mqtt.qos: expected an integer 0-2, got 3"),
        ("[mqtt]\nenabled = \"yes\"\n", 'mqtt.enabled: expected true or false, got "yes"'),
        ("[mqtt]\nhost = \"\"\n", 'mqtt.host: expected a non-empty string, got ""'),
        ("[mqtt]\ntopic_prefix = \"fer/#\"\n", "mqtt.topic_prefix: must be a topic without wildcards"),
        ("[source]\nfps = 0\n", "source.fps: expected a number > 0 and <= 120, got 0"),
        ("[source]\nfps = 500\n", "source.fps: expected a number > 0 and <= 120, got 500"),
        ("[source]\nfps = \"fast\"\n", 'source.fps: expected a number > 0 and <= 120, got "fast"'),
        ("[detector]\nbackend = \"yolo\"\n",
         'detector.backend: expected one of "blazeface", "blazeface-tasks", "haar", got "yolo"'),
        ("[tracker]\nmin_hits = 0\n", "tracker.min_hits: expected an integer 1-100, got 0"),
        ("[smoother]\nalpha = 1.5\n", "smoother.alpha: expected a number > 0 and <= 1, got 1.5"),
        ("[log]\nlevel = \"loud\"\n",
         'log.level: expected one of "debug", "info", "warning", "error", got "loud"'),
        ("mqtt = 5\n", "mqtt: expected a table, got 5"),
        ("[device]\nname = \"a/b\"\n", "device.name: must not contain '/', '+', '#' or spaces"),
        ("[classifier]\nmodel = 7\n", 'classifier.model: expected a file path or "", got 7'),
        ("[detector]\ndetect_width = 32\n", "detector.detect_width: expected 0 (off) or an integer 64-8192, got 32"),
        ("[detector]\nhaar_width = 10\n", "detector.haar_width: expected 0 (off) or an integer 64-8192, got 10"),
        ("[detector]\ntiles = 9\n", "detector.tiles: expected an integer 1-4, got 9"),
        ("[source]\nreconnect_min_s = 5.0\nreconnect_max_s = 1.0\n", "source: reconnect_min_s 5.0 exceeds"),
        ("[mqtt]\nreconnect_min_s = 10.0\nreconnect_max_s = 2.0\n", "mqtt: reconnect_min_s 10.0 exceeds"),
    ],
)
def test_bad_values_give_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    assert error_of(path).startswith(f"{path}: {message}")


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("[mqtt]\nhost = \"a\"\nport = \n", 3, "invalid value"),
        ("[mqtt]\nport = 1883\nport = 1884\n", 3, "cannot overwrite a value"),
        ("[mqtt]\nhost = \"unterminated\n", 2, "illegal character"),
        ("[mqtt]\n\nhost = \"unterminated", 3, "unterminated string"),
        ("# comment\n[mqtt\n", 2, ""),
    ],
)
def test_bad_toml_names_its_line(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = write(tmp_path, text)
    assert error_of(path).startswith(f"{path}: line {line}: {reason}")


def test_unreadable_tls_file_names_the_key_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ca.pem"
    path = write(tmp_path, f'[mqtt]\ntls_ca = "{missing}"\n')
    assert error_of(path) == f"{path}: mqtt.tls_ca: cannot read {missing} (No such file or directory)"


def test_tls_path_that_is_a_folder_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, f'[mqtt]\ntls_ca = "{tmp_path}"\n')
    assert error_of(path) == f"{path}: mqtt.tls_ca: cannot read {tmp_path} (Is a directory)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_tls_key_without_permission_is_reported(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    key.chmod(0)
    path = write(tmp_path, '[mqtt]\ntls_cert = "c.pem"\ntls_key = "k.pem"\n')
    assert error_of(path) == f"{path}: mqtt.tls_key: cannot read {key} (Permission denied)"


def test_tls_cert_needs_its_key(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    path = write(tmp_path, '[mqtt]\ntls_cert = "c.pem"\n')
    assert error_of(path) == f"{path}: mqtt: tls_cert and tls_key must be given together"


def test_relative_paths_in_a_file_are_relative_to_that_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    path = write(tmp_path, '[mqtt]\ntls_ca = "ca.pem"\n[classifier]\nmodel = "m/x.tflite"\n')
    config = load_config(path, {})
    assert config.mqtt.tls_ca == tmp_path / "ca.pem"
    assert config.classifier.model == tmp_path / "m" / "x.tflite"
    assert config.detector.model is None


def test_the_shipped_config_copied_elsewhere_still_names_the_shipped_model(tmp_path: Path) -> None:
    copy = tmp_path / "etc" / "config.toml"
    copy.parent.mkdir()
    copy.write_text((REPO / "config.toml").read_text())
    assert load_config(copy, {}).classifier.model == ROOT / "models" / "fer_cnn_int8.tflite"


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    assert error_of(path) == f"{path}: cannot read (No such file or directory)"


def test_cli_overrides_apply_before_validation(tmp_path: Path) -> None:
    path = write(tmp_path, "[mqtt]\nport = 1883\n[source]\nfps = 10.0\n")
    keys = CLI_OVERRIDES
    config = load_config(path, {keys["mqtt_port"]: "1884", keys["mqtt_host"]: "broker", keys["fps"]: "7.5",
                                keys["source"]: "clip.mp4"})
    assert (config.mqtt.port, config.mqtt.host, config.source.fps, config.source.source) == (
        1884, "broker", 7.5, "clip.mp4")
    assert load_config(path, {keys["mqtt_port"]: None}).mqtt.port == 1883
    expected = f'{path}: mqtt.port: expected an integer 1-65535, got "abc"'
    assert error_of(path, {keys["mqtt_port"]: "abc"}) == expected
    assert error_of(None, {keys["fps"]: 0}) == "defaults: source.fps: expected a number > 0 and <= 120, got 0"

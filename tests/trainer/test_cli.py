"""fer-trainer at its command line: the three commands, and one line plus exit 2 for every user mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TRAINER = [sys.executable, "-m", "trainer"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TRAINER, *args], capture_output=True, text=True, timeout=300)


def test_help_lists_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("fit", "evaluate", "quantize"):
        assert command in result.stdout


def _bad_csv(tmp_path: Path) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text("emotion,pixels,Usage\n" + "0," + " ".join(["1"] * 2304) + ",Training\n" + "2,1 2 3,Training\n")
    return path


def _bad_folder(tmp_path: Path) -> Path:
    (tmp_path / "images" / "train" / "Contempt").mkdir(parents=True)
    return tmp_path / "images"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (lambda tmp: ["fit", "--data", str(tmp / "missing.csv")], "missing.csv: not found"),
        (lambda tmp: ["fit", "--data", str(_bad_csv(tmp)), "--run-dir", str(tmp / "r")],
         "row 3: pixels: expected 2304 values, got 3"),
        (lambda tmp: ["fit", "--data", str(_bad_folder(tmp)), "--run-dir", str(tmp / "r")],
         "unknown class folder 'Contempt'"),
        (lambda tmp: ["fit", "--arch", "resnet9000"], "--arch: expected one of cnn, tutorial, mobilenet"),
        (lambda tmp: ["fit", "--epochs", "0"], "--epochs: expected 1-10000, got 0"),
        (lambda tmp: ["fit", "--stage-convs", "3,3"], "--stage-convs: expected four comma-separated counts of 1-4"),
        (lambda tmp: ["fit", "--stage-convs", "3,3,9,2"], "such as 3,3,3,2, got '3,3,9,2'"),
        (lambda tmp: ["fit", "--mix", "blend"], "--mix: expected one of none, mixup, cutmix, got 'blend'"),
        (lambda tmp: ["fit", "--warp", "twice"], "--warp: expected one of chained, single, got 'twice'"),
        (lambda tmp: ["fit", "--optimizer", "adam"], "--optimizer: expected one of adamw, sgd, got 'adam'"),
        (lambda tmp: ["fit", "--teacher-weight", "1.5"], "--teacher-weight: expected 0.0-1.0, got 1.5"),
        (lambda tmp: ["fit", "--teacher-crop", "50"], "--teacher-crop: expected 24-48, got 50"),
        (lambda tmp: ["fit", "--distill", "later"], "--distill: expected one of offline, online, got 'later'"),
        (lambda tmp: ["fit", "--epochs", "3", "--average-from", "5"], "--average-from: expected 0-3, got 5"),
        (lambda tmp: ["evaluate", str(tmp / "nope.tflite"), "--data", str(_bad_csv(tmp))], "row 3"),
        (lambda tmp: ["quantize", "--run-dir", str(tmp)], "best.keras: not found; expected a checkpoint and run.json"),
        (lambda tmp: ["quantize", "--run-dir", str(tmp), "--checkpoint", str(tmp / "e9.keras")], "e9.keras: not found"),
        (lambda tmp: ["evaluate", str(tmp / "nope.tflite"), "--split", "Validation"], "--split: expected one of"),
        (lambda tmp: ["evaluate", str(tmp / "a.keras"), "--center-crop", "12"],
         "--center-crop: expected 24-48, got 12"),
        (lambda tmp: ["evaluate", str(tmp / "a.keras"), "--blur", "3"], "--blur: expected 0-2 pixels, got 3"),
        (lambda tmp: ["quantize", "--run-dir", str(tmp), "--center-crop", "50"],
         "--center-crop: expected 24-48, got 50"),
        (lambda tmp: ["quantize", "--run-dir", str(tmp), "--blur", "3"], "--blur: expected 0-2 pixels, got 3"),
    ],
    ids=["missing-data", "pixel-count", "class-folder", "arch", "epochs", "stage-count", "stage-text", "mix", "warp",
         "optimizer", "teacher-weight", "teacher-crop", "distill", "average-from",
         "evaluate-bad-csv", "quantize-empty", "quantize-checkpoint", "split", "evaluate-crop", "evaluate-blur",
         "quantize-crop", "quantize-blur"],
)
def test_user_mistakes_exit_2_with_one_line(tmp_path: Path, args, expected: str) -> None:
    argv = args(tmp_path)
    result = run(*argv)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("fer-trainer:")]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    if argv[0] == "fit" and "--data" in argv:
        assert result.stderr.strip() == lines[0], "data errors come before any library output"

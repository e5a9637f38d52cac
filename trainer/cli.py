"""fer-trainer: fit, evaluate, quantize. User mistakes print one line and exit 2."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, get_args

import typer

from edge.errors import UserError
from trainer import data as fer_data
from trainer import distill

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

app = typer.Typer(help="Train, evaluate and quantize FER-2013 emotion models.", no_args_is_help=True,
                  pretty_exceptions_enable=False)

DATA_HELP = "FER-2013 CSV (plain or .gz) or image-folder root (train/<class>/...); default $FER_DATA or ./fer2013.csv"
Data = Annotated[Path | None, typer.Option("--data", help=DATA_HELP)]
Labels = Annotated[str, typer.Option(help="fer2013, ferplus (majority vote), ferplus-soft (vote shares) or "
                                          "fer2013+ferplus (Training targets: half label, half vote shares)")]


@app.callback()
def main() -> None:
    """Train, evaluate and quantize FER-2013 emotion models."""


def default_data(data: Path | None) -> Path:
    if data is not None:
        return data
    if "FER_DATA" in os.environ:
        return Path(os.environ["FER_DATA"])
    candidates = [Path("fer2013.csv"), Path("fer2013.csv.gz"), Path("data/fer2013.csv"), Path("data/fer2013.csv.gz")]
    return next((p for p in candidates if p.exists()), candidates[0])


def stage_counts(text: str) -> tuple[int, ...]:
    parts = text.split(",")
    if len(parts) != 4 or not all(part.strip().isdigit() and 1 <= int(part) <= 4 for part in parts):
        fail(f"--stage-convs: expected four comma-separated counts of 1-4 such as 3,3,3,2, got {text!r}")
    return tuple(int(part) for part in parts)


def fail(message: str) -> None:
    typer.echo(f"fer-trainer: {message}", err=True)
    raise typer.Exit(2)


def check_views(center_crop: int, blur: float) -> None:
    from trainer.evaluate import check_view

    try:
        check_view(center_crop, blur)
    except UserError as exc:
        fail(str(exc))


@app.command()
def fit(
    data: Data = None,
    arch: Annotated[str, typer.Option(help="cnn, tutorial or mobilenet")] = "cnn",
    labels: Labels = "fer2013",
    epochs: int = 40,
    batch_size: int = 64,
    learning_rate: Annotated[float, typer.Option("--lr", "--learning-rate")] = 1e-3,
    optimizer: Annotated[str, typer.Option(help="adamw, or sgd (Nesterov momentum 0.9; give it a larger --lr, "
                                                "such as 0.01)")] = "adamw",
    schedule: Annotated[str, typer.Option(help="cosine (with one warm-up epoch) or constant")] = "cosine",
    label_smoothing: float = 0.1,
    augment: Annotated[str, typer.Option(help="none, tutorial, strong or heavy")] = "tutorial",
    warp: Annotated[str, typer.Option(help="chained: resample each face once per geometric transform (the shipped "
                                           "models' recipe); single: once for all four (sharper faces)")] = "chained",
    mix: Annotated[str, typer.Option(help="none, mixup or cutmix (mixes pairs of faces and their targets)")] = "none",
    width: Annotated[float, typer.Option(help="channel multiplier (cnn) or MobileNet alpha")] = 1.0,
    stage_convs: Annotated[str, typer.Option(help="cnn: 3×3 convs in each of the four stages")] = "2,2,2,2",
    input_size: Annotated[int, typer.Option(help="mobilenet: input side inside the model")] = 96,
    run_dir: Annotated[Path | None, typer.Option(help="output directory; default runs/<arch>")] = None,
    resume: Annotated[bool, typer.Option(help="continue an interrupted run from its backup/")] = False,
    strategy: Annotated[str, typer.Option(help="default, mirrored (all local GPUs) or multi-worker")] = "default",
    precision: Annotated[str, typer.Option(help="float32, mixed_bfloat16 (CPUs with AMX/AVX512-BF16) "
                                                "or mixed_float16 (GPUs)")] = "float32",
    seed: int = 42,
    limit: Annotated[int, typer.Option(help="use only N Training and N PublicTest faces (smoke runs)")] = 0,
    init_from: Annotated[Path | None, typer.Option(help="start from this .keras checkpoint's weights")] = None,
    teacher: Annotated[list[Path] | None, typer.Option(help="distil from this .keras checkpoint (repeat for an "
                                                             "ensemble)")] = None,
    teacher_weight: Annotated[float, typer.Option(help="share of the target taken from the teachers")] = 0.5,
    teacher_temperature: Annotated[float, typer.Option(help="softens the teachers' scores")] = 2.0,
    teacher_crop: Annotated[int, typer.Option(help="teachers score the central N×N pixels (and their mirror), "
                                                   "as quantize --center-crop")] = 48,
    distill_mode: Annotated[str, typer.Option("--distill", help="offline: teachers score the plain faces once; "
                                              "online: every augmented batch as the student sees it "
                                              "(slower epochs)")] = "offline",
    average_from: Annotated[int, typer.Option(help="from epoch N on, also keep the mean of every epoch's "
                                                   "weights in <run-dir>/averaged.keras (0: off)")] = 0,
) -> None:
    """Train on Training, keep the best checkpoint by PublicTest accuracy."""
    choices = {"labels": (labels, get_args(fer_data.LabelMode)),
               "optimizer": (optimizer, ("adamw", "sgd")), "schedule": (schedule, ("cosine", "constant")),
               "augment": (augment, get_args(fer_data.Augment)), "warp": (warp, get_args(fer_data.Warp)),
               "mix": (mix, get_args(fer_data.Mix)),
               "distill": (distill_mode, get_args(distill.Mode)),
               "strategy": (strategy, ("default", "mirrored", "multi-worker")),
               "precision": (precision, ("float32", "mixed_bfloat16", "mixed_float16")),
               "arch": (arch, ("cnn", "tutorial", "mobilenet"))}
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            fail(f"--{name}: expected one of {', '.join(allowed)}, got {value!r}")
    for name, value, low, high in (("epochs", epochs, 1, 10_000), ("batch-size", batch_size, 1, 65_536),
                                   ("lr", learning_rate, 1e-7, 10.0), ("teacher-weight", teacher_weight, 0.0, 1.0),
                                   ("teacher-temperature", teacher_temperature, 0.1, 100.0),
                                   ("teacher-crop", teacher_crop, 24, 48), ("average-from", average_from, 0, epochs)):
        if not low <= value <= high:
            fail(f"--{name}: expected {low}-{high}, got {value}")
    stages = stage_counts(stage_convs)
    try:
        dataset = fer_data.load(default_data(data), labels)  # data errors first, before TensorFlow's start-up noise
        from trainer.fit import FitOptions, precision_warning
        from trainer.fit import fit as run_fit

        if warning := precision_warning(precision):
            typer.echo(f"fer-trainer: warning: {warning}", err=True)
        options = FitOptions(
            data=default_data(data), run_dir=run_dir or Path("runs") / arch, arch=arch, labels=labels,
            epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, optimizer=optimizer,
            schedule=schedule,
            label_smoothing=label_smoothing, augment=augment, warp=warp, mix=mix, width=width, input_size=input_size,
            stage_convs=stages,
            strategy=strategy, precision=precision, seed=seed, limit=limit, resume=resume, init_from=init_from,
            teachers=tuple(teacher or ()), teacher_weight=teacher_weight, teacher_temperature=teacher_temperature,
            teacher_crop=teacher_crop, distill_mode=distill_mode, average_from=average_from,
        )
        best = run_fit(options, dataset)
    except (UserError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"best checkpoint: {best}")


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help=".keras checkpoint or int8 .tflite (with its manifest beside it)")],
    data: Data = None,
    split: Annotated[str, typer.Option(help="Training, PublicTest or PrivateTest")] = "PublicTest",
    labels: Labels = "fer2013",
    out_dir: Annotated[Path | None, typer.Option(help="folder for report and PNG; default: beside MODEL")] = None,
    flip_average: Annotated[bool, typer.Option(help=".keras: also score the mirror image and average, "
                                                    "as quantize --flip-average")] = False,
    center_crop: Annotated[int, typer.Option(help=".keras: score the central N×N pixels, "
                                                  "as quantize --center-crop")] = 48,
    blur: Annotated[float, typer.Option(help=".keras: then soften the view by a Gaussian of S pixels, "
                                             "as quantize --blur")] = 0.0,
) -> None:
    """Accuracy, macro-F1, per-class precision/recall/F1, confusion matrix (PNG) and a JSON report."""
    from rich.console import Console
    from rich.table import Table

    from trainer.evaluate import confusion_png, predict, score

    if split not in fer_data.SPLITS:
        fail(f"--split: expected one of {', '.join(fer_data.SPLITS)}, got {split!r}")
    check_views(center_crop, blur)
    try:
        faces = fer_data.load(default_data(data), labels).split(split)
        scores = predict(model, faces.images, flip_average=flip_average, center_crop=center_crop,
                         blur=blur)
        report = score(str(model), split, faces.labels, scores.argmax(axis=1))
    except UserError as exc:
        fail(str(exc))
    out_dir = out_dir or model.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    views = ((f"_crop{center_crop}" if center_crop != 48 else "") + (f"_blur{blur:g}" if blur else "")
             + ("_flip" if flip_average else ""))
    stem = f"{model.stem}{views}_{split}"
    (out_dir / f"{stem}.json").write_text(report.to_json())
    confusion_png(report, out_dir / f"{stem}_confusion.png")

    table = Table(title=f"{model.name} on {split}: accuracy {report.accuracy:.2%}, macro-F1 {report.macro_f1:.4f}")
    for column in ("class", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="right")
    for label, scores in report.per_class.items():
        table.add_row(label, f"{scores.precision:.3f}", f"{scores.recall:.3f}", f"{scores.f1:.3f}", str(scores.support))
    Console().print(table)
    typer.echo(f"report: {out_dir / stem}.json, confusion matrix: {out_dir / stem}_confusion.png")


@app.command()
def quantize(
    run_dir: Annotated[Path, typer.Option(help="the run directory written by fit")] = Path("runs/cnn"),
    data: Data = None,
    out: Annotated[Path | None, typer.Option(help="output .tflite; default <run-dir>/fer_<arch>_int8.tflite")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="the .keras to export; default <run-dir>/best.keras "
                                                         "(<run-dir>/last.keras: the last epoch)")] = None,
    calibration_faces: int = 300,
    flip_average: Annotated[bool, typer.Option(help="score each face and its mirror image inside the model "
                                                    "and average them (about twice the compute)")] = False,
    center_crop: Annotated[int, typer.Option(help="score the central N×N pixels scaled back up to 48×48 "
                                                  "(48: the whole face crop)")] = 48,
    blur: Annotated[float, typer.Option(help="then soften that view by a Gaussian of S pixels, as augmentation's "
                                             "resampling softens every training face (0: none)")] = 0.0,
) -> None:
    """Full-integer int8 TFLite model + manifest, with float-vs-int8 agreement on PublicTest and PrivateTest."""
    from trainer.quantize import QuantizeOptions
    from trainer.quantize import quantize as run_quantize

    check_views(center_crop, blur)
    try:
        path, comparison = run_quantize(QuantizeOptions(run_dir=run_dir, data=default_data(data), out=out,
                                                        checkpoint=checkpoint,
                                                        calibration_faces=calibration_faces,
                                                        flip_average=flip_average, center_crop=center_crop,
                                                        blur=blur))
    except UserError as exc:
        fail(str(exc))
    for split, figures in comparison.items():
        typer.echo(f"{split}: float {figures['float_accuracy']:.2%}, int8 {figures['int8_accuracy']:.2%}, "
                   f"identical predictions {figures['identical_predictions']:.2%}")
    typer.echo(f"model: {path} ({path.stat().st_size:,} bytes), manifest: {path.with_suffix('.json')}")

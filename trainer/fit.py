"""Training: strategy, compile, callbacks (best checkpoint, backup for --resume, CSV history, curves)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import keras
import numpy as np
import tensorflow as tf
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from edge.errors import UserError
from trainer import cpu, distill
from trainer import data as fer_data
from trainer.models import ModelOptions, build

Strategy = Literal["default", "mirrored", "multi-worker"]
Schedule = Literal["cosine", "constant"]
Optimizer = Literal["adamw", "sgd"]
Precision = Literal["float32", "mixed_bfloat16", "mixed_float16"]


@dataclass(frozen=True, slots=True)
class FitOptions:
    data: Path
    run_dir: Path
    arch: str = "cnn"
    labels: fer_data.LabelMode = "fer2013"
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: Optimizer = "adamw"  # sgd: Nesterov momentum 0.9 (wants a larger --lr, such as 0.01)
    schedule: Schedule = "cosine"
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    augment: fer_data.Augment = "tutorial"
    warp: fer_data.Warp = "chained"  # resample each face once per geometric transform, or once for all
    mix: fer_data.Mix = "none"
    width: float = 1.0
    stage_convs: tuple[int, ...] = (2, 2, 2, 2)
    input_size: int = 96
    strategy: Strategy = "default"
    precision: Precision = "float32"  # mixed_bfloat16 speeds up CPUs with AMX/AVX512-BF16; mixed_float16 GPUs
    seed: int = 42
    limit: int = 0  # use only this many Training/PublicTest faces (0: all); for smoke runs
    resume: bool = False
    init_from: Path | None = None  # start from this checkpoint's weights (same arch, width and stage convs)
    teachers: tuple[Path, ...] = ()  # distil from these checkpoints' averaged, flip-averaged scores
    teacher_weight: float = 0.5
    teacher_temperature: float = 2.0
    teacher_crop: int = 48  # teachers score the central N×N pixels and their mirror image (48: the whole face)
    distill_mode: distill.Mode = "offline"  # teachers score the plain faces once, or every augmented batch
    average_from: int = 0  # from this epoch on, keep the mean of the epochs' weights in averaged.keras (0: off)


def make_strategy(name: Strategy) -> tf.distribute.Strategy:
    """default: one device; mirrored: all local GPUs; multi-worker: hosts listed in TF_CONFIG."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def learning_rate(options: FitOptions, steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    if options.schedule == "constant":
        return options.learning_rate
    total = options.epochs * steps_per_epoch
    warmup = min(options.warmup_epochs * steps_per_epoch, total - 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=options.learning_rate * (0.1 if warmup else 1.0),
        decay_steps=total - warmup,
        warmup_target=options.learning_rate if warmup else None,
        warmup_steps=warmup,
        alpha=0.01,
    )


def make_optimizer(options: FitOptions, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """AdamW with weight decay 1e-4, or SGD with Nesterov momentum 0.9 and weight decay 5e-4."""
    rate = learning_rate(options, steps_per_epoch)
    if options.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return keras.optimizers.AdamW(rate, weight_decay=1e-4)


def fit(options: FitOptions, dataset: fer_data.Dataset | None = None) -> Path:
    """Train and return the path of the best checkpoint (by PublicTest accuracy); `last.keras` holds the last epoch."""
    run_dir = options.run_dir
    backup_dir = run_dir / "backup"
    if run_dir.exists() and any(run_dir.iterdir()) and not options.resume:
        raise UserError(f"{run_dir}: run directory is not empty; pass --resume to continue it or choose another")
    if options.resume and not backup_dir.exists():
        raise UserError(f"{run_dir}: nothing to resume (no backup/ from an earlier run)")
    run_dir.mkdir(parents=True, exist_ok=True)
    seed = stream_seed(options)
    keras.utils.set_random_seed(seed)

    dataset = dataset or fer_data.load(options.data, options.labels)
    train, val = dataset.split("Training"), dataset.split("PublicTest")
    if options.limit:
        train, val = train.take(options.limit, options.seed), val.take(options.limit, options.seed)
    relabel = None
    if options.teachers and options.distill_mode == "online":
        relabel = distill.online_targets(options.teachers, options.teacher_temperature, options.teacher_crop,
                                         options.teacher_weight, options.precision)
    elif options.teachers:
        scores = distill.teacher_scores(options.teachers, train.images, options.teacher_temperature,
                                        options.teacher_crop)
        train = distill.distilled(train, scores, options.teacher_weight)
    (run_dir / "run.json").write_text(json.dumps(asdict(options) | {"source": dataset.source}, default=str, indent=2))

    strategy = make_strategy(options.strategy)
    batch_size = options.batch_size * strategy.num_replicas_in_sync
    train_ds = fer_data.as_tf_dataset(train, batch_size, train=True, seed=seed, augment=options.augment,
                                      warp=options.warp, mix=options.mix, relabel=relabel)
    val_ds = fer_data.as_tf_dataset(val, batch_size, train=False)
    steps_per_epoch = len(train) // batch_size
    if steps_per_epoch < 1:
        raise UserError(f"{options.data}: {len(train)} Training faces is fewer than one batch of {batch_size}")

    with strategy.scope(), dtype_policy(options.precision):
        model = build(options.arch, ModelOptions(width=options.width, input_size=options.input_size,
                                                 stage_convs=options.stage_convs))
        if options.init_from and not options.resume:
            load_weights(model, options.init_from)
        model.compile(
            optimizer=make_optimizer(options, steps_per_epoch),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=options.label_smoothing),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        )

    best_path = run_dir / "best.keras"
    history_path = run_dir / "history.csv"
    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup_dir), double_checkpoint=True, delete_checkpoint=False),
        keras.callbacks.ModelCheckpoint(
            str(best_path), monitor="val_accuracy", mode="max", save_best_only=True,
            initial_value_threshold=_best_so_far(history_path),
        ),
        keras.callbacks.ModelCheckpoint(str(run_dir / "last.keras")),
        *([WeightAverage(options.average_from, run_dir / "averaged.keras", val_ds)] if options.average_from else []),
        keras.callbacks.CSVLogger(str(history_path), append=options.resume),
        CurvesCallback(history_path, run_dir / "curves.png"),
        RichProgress(options.epochs, steps_per_epoch),
    ]
    model.fit(train_ds, validation_data=val_ds, epochs=options.epochs, callbacks=callbacks, verbose=0)
    return best_path


def stream_seed(options: FitOptions) -> int:
    """The seed of shuffling and augmentation. A resumed run adds the epochs already done, so that it draws new
    batches instead of replaying those of the run's first epochs."""
    done = len(_history(options.run_dir / "history.csv")) if options.resume else 0
    return options.seed + done


def last_from_backup(run_dir: Path) -> Path:
    """Rebuild `last.keras` (float32, no optimizer state) from `backup/`, for a run of which only `run.json`,
    `history.csv` and `backup/` were kept: the state after its last finished epoch."""
    weights = run_dir / "backup" / "latest.weights.h5"
    if not weights.is_file():
        raise UserError(f"{weights}: not found (expected the backup of a run written by fit)")
    run = json.loads((run_dir / "run.json").read_text())
    model = build(run["arch"], ModelOptions(width=run["width"], input_size=run["input_size"],
                                            stage_convs=tuple(run["stage_convs"])))
    model.load_weights(weights)
    model.save(run_dir / "last.keras")
    return run_dir / "last.keras"


def load_weights(model: keras.Model, checkpoint: Path) -> None:
    """Start from an earlier checkpoint of the same architecture (fine-tuning, a new schedule)."""
    from trainer.models import load_float32

    if not checkpoint.is_file():
        raise UserError(f"{checkpoint}: --init-from checkpoint not found")
    weights = load_float32(checkpoint).get_weights()
    expected = [tuple(w.shape) for w in model.get_weights()]
    if [tuple(w.shape) for w in weights] != expected:
        raise UserError(f"{checkpoint}: --init-from weights do not fit --arch {model.name} "
                        "at this --width and --stage-convs")
    model.set_weights(weights)


def precision_warning(precision: Precision) -> str | None:
    """A warning when bfloat16 would be emulated: no GPU, and a CPU without bfloat16 instructions."""
    if precision != "mixed_bfloat16" or not cpu.lacks_bfloat16() or tf.config.list_physical_devices("GPU"):
        return None
    return ("--precision mixed_bfloat16: this CPU has no bfloat16 instructions (avx512_bf16, amx_bf16), so "
            "bfloat16 is emulated and training runs several times slower than with float32")


@contextmanager
def dtype_policy(name: Precision) -> Iterator[None]:
    """Layers built inside compute in `name` (weights stay float32); the global policy is restored after."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _history(history_path: Path) -> list[dict[str, str]]:
    if not history_path.exists():
        return []
    with open(history_path) as handle:
        return list(csv.DictReader(handle))


def _best_so_far(history_path: Path) -> float | None:
    scores = [float(row["val_accuracy"]) for row in _history(history_path) if row.get("val_accuracy")]
    return max(scores) if scores else None


class WeightAverage(keras.callbacks.Callback):
    """Stochastic weight averaging: from epoch `start` (1-based) on, the mean of the weights after each epoch,
    BatchNorm statistics included, saved to `path` and scored on PublicTest as `averaged_val_accuracy`. A resumed
    run reloads the mean from `path`."""

    def __init__(self, start: int, path: Path, val_ds: tf.data.Dataset) -> None:
        super().__init__()
        self.start, self.path, self.val_ds = start, path, val_ds
        self.mean: list[np.ndarray] | None = None
        self.count = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        done = len(_history(self.path.parent / "history.csv"))
        if self.path.exists() and done >= self.start:
            current = self.model.get_weights()
            self.model.load_weights(self.path)
            self.mean, self.count = self.model.get_weights(), done - self.start + 1
            self.model.set_weights(current)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        logs["averaged_val_accuracy"] = math.nan
        if epoch + 1 < self.start:
            return
        current = self.model.get_weights()
        self.count += 1
        self.mean = current if self.mean is None else [
            mean + (weight - mean) / self.count if np.issubdtype(weight.dtype, np.floating) else weight
            for mean, weight in zip(self.mean, current, strict=True)]
        self.model.set_weights(self.mean)
        self.model.save(self.path)
        logs["averaged_val_accuracy"] = self.model.evaluate(self.val_ds, verbose=0, return_dict=True)["accuracy"]
        self.model.set_weights(current)


class RichProgress(keras.callbacks.Callback):
    """One rich progress bar for the epoch's batches, and a line per finished epoch."""

    def __init__(self, epochs: int, steps: int) -> None:
        super().__init__()
        self.epochs, self.steps = epochs, steps
        self.progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[metrics]}"), TimeRemainingColumn())
        self.task = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.progress.start()
        self.task = self.progress.add_task("fit", total=self.steps, epoch=f"{epoch + 1}/{self.epochs}", metrics="")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        shown = " ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items())
        self.progress.update(self.task, completed=batch + 1, metrics=shown)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.progress.remove_task(self.task)
        self.progress.stop()
        shown = " ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items() if k != "learning_rate")
        self.progress.console.print(f"epoch {epoch + 1}/{self.epochs} {shown}")


class CurvesCallback(keras.callbacks.Callback):
    """Redraw loss/accuracy curves from history.csv after every epoch, so an interrupted run has them too."""

    def __init__(self, history_path: Path, png_path: Path) -> None:
        super().__init__()
        self.history_path, self.png_path = history_path, png_path

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.history_path.exists():
            plot_curves(self.history_path, self.png_path)


def plot_curves(history_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(history_path) as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    epochs = np.arange(1, len(rows) + 1)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, label in (("", "Training"), ("val_", "PublicTest")):
            values = [float(r[prefix + metric]) if r.get(prefix + metric) else math.nan for r in rows]
            axis.plot(epochs, values, label=label)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.legend()
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    plt.close(figure)

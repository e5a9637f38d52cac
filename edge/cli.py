"""fer-edge: run, replay, analyze, bench, check-config.

Exit codes: 0 done; 1 a pipeline thread failed (its traceback is logged once); 2 a user mistake (config,
model, file; one line `fer-edge: ...`, no traceback); 3 `replay` or `bench` ended with messages the broker
never acknowledged within `[mqtt] flush_timeout`; 130 a second SIGINT/SIGTERM while stopping.
`run` is a service: on a signal it waits for an unreachable broker no longer than it takes to notice, reports
unsent messages in its last line and exits 0.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import cv2
import typer
from rich.console import Console

from edge.bench import PEER_VENV, BenchReport, PeerResult, machine, run_peer
from edge.config import CLI_OVERRIDES, Config, load_config
from edge.daemon import Plan, build_inference, build_pipeline, build_publisher
from edge.errors import UserError
from edge.events import Frame
from edge.pipeline import Summary
from edge.service import stop_on_signals

app = typer.Typer(help="Facial emotion recognition on edge devices: camera → faces → emotions → MQTT.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
log = logging.getLogger("edge")

EXIT_FAILED, EXIT_USER, EXIT_UNSENT, EXIT_INTERRUPTED = 1, 2, 3, 130

ConfigPath = Annotated[Path | None, typer.Option(
    "--config", help="config file; default ./config.toml if present, else the built-in defaults")]
SourceOpt = Annotated[str | None, typer.Option(help="demo, camera index, /dev/videoN, video file or URL")]
MqttHost = Annotated[str | None, typer.Option(help="broker host (overrides mqtt.host)")]
MqttPort = Annotated[int | None, typer.Option(help="broker port (overrides mqtt.port)")]
Fps = Annotated[float | None, typer.Option(help="target frames per second (replay: pace to it)")]
Model = Annotated[Path | None, typer.Option(help="emotion model .tflite, manifest beside it")]
Detector = Annotated[str | None, typer.Option(help="face detector: blazeface, blazeface-tasks or haar")]
EventsOut = Annotated[Path | None, typer.Option(help="write events as JSON lines to this file instead of stdout")]


@app.callback()
def main() -> None:
    """Facial emotion recognition on edge devices."""


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """A UserError anywhere becomes one line on stderr and exit code 2."""
    try:
        yield
    except UserError as exc:
        typer.echo(f"fer-edge: {exc}", err=True)
        raise typer.Exit(EXIT_USER) from None


def config_file(config: Path | None) -> Path | None:
    """--config, else ./config.toml if present, else None: the built-in defaults (the repo's config.toml)."""
    return config if config is not None else (Path("config.toml") if Path("config.toml").is_file() else None)


def settings(config: Path | None, **flags: object) -> Config:
    """The config file (or defaults) with command-line overrides; sets up logging at `[log] level`."""
    path = config_file(config)
    if isinstance(flags.get("model"), Path):
        flags["model"] = str(flags["model"].expanduser().resolve())  # type: ignore[union-attr]
    loaded = load_config(path, {CLI_OVERRIDES[key]: value for key, value in flags.items() if value is not None})
    logging.basicConfig(level=loaded.log.level.upper(), stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return loaded


def serve(config: Config, plan: Plan, strict: bool) -> tuple[int, Summary | None]:
    """Run a pipeline until its source ends or a signal stops it; the exit code (module doc) and summary."""
    with user_errors():
        pipeline = build_pipeline(config, plan)
    try:
        with stop_on_signals(pipeline.stop):
            summary = pipeline.run()
    except KeyboardInterrupt:
        typer.echo("fer-edge: interrupted while stopping", err=True)
        return EXIT_INTERRUPTED, None
    log.info("done: %d frames, %d faces, %d events, %d dropped, %.1f fps", summary.frames, summary.faces,
             summary.events, summary.drops, summary.measured.fps)
    if summary.failed:
        typer.echo(f"fer-edge: pipeline thread {summary.failed!r} failed (traceback above); stopped", err=True)
        return EXIT_FAILED, summary
    if summary.unsent:
        m = config.mqtt
        waited = f" within flush_timeout {m.flush_timeout:g} s" if strict else ""
        typer.echo(f"fer-edge: {summary.unsent} messages not delivered to MQTT broker {m.host}:{m.port}{waited}",
                   err=True)
        return (EXIT_UNSENT if strict else 0), summary
    return 0, summary


@app.command()
def run(config: ConfigPath = None, source: SourceOpt = None, mqtt_host: MqttHost = None, mqtt_port: MqttPort = None,
        fps: Fps = None, model: Model = None, detector: Detector = None, events_out: EventsOut = None) -> None:
    """The daemon: live source, newest frame only, events on the console and to MQTT when a broker is reachable."""
    with user_errors():
        loaded = settings(config, source=source, mqtt_host=mqtt_host, mqtt_port=mqtt_port, fps=fps, model=model,
                          detector=detector)
    code, _ = serve(loaded, Plan(mode="live", events_out=events_out, strict_delivery=False), strict=False)
    raise typer.Exit(code)


@app.command()
def replay(video: Annotated[str, typer.Argument(help="video file (or any source) to process frame by frame")],
           events_out: EventsOut = None, config: ConfigPath = None, mqtt_host: MqttHost = None,
           mqtt_port: MqttPort = None, fps: Fps = None, model: Model = None, detector: Detector = None) -> None:
    """Every frame, deterministic; each event one JSON line; MQTT too when enabled."""
    with user_errors():
        loaded = settings(config, source=video, mqtt_host=mqtt_host, mqtt_port=mqtt_port, fps=fps, model=model,
                          detector=detector)
    code, _ = serve(loaded, Plan(mode="replay", events_out=events_out, fps=fps), strict=True)
    raise typer.Exit(code)


@app.command()
def analyze(images: Annotated[list[Path], typer.Argument(help="image files")], config: ConfigPath = None,
            model: Model = None, detector: Detector = None) -> None:
    """One JSON line per face: image, box (x, y, w, h in pixels), emotion, confidence, probabilities."""
    with user_errors():
        inference = build_inference(settings(config, model=model, detector=detector))
        try:
            for index, path in enumerate(images):
                image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
                if image is None:
                    raise UserError(f"{path}: cannot read image")
                found = inference.process(Frame(index, time.time(), time.perf_counter(), image), stream=False).result
                faces = found.observations if found else ()
                for face in faces:
                    best = max(range(len(face.probabilities)), key=face.probabilities.__getitem__)
                    typer.echo(json.dumps({
                        "image": str(path), "box": face.box.as_list(), "emotion": inference.labels[best],
                        "confidence": round(face.probabilities[best], 4),
                        "probabilities": {k: round(p, 4) for k, p in zip(inference.labels, face.probabilities,
                                                                          strict=True)}}))
                if not faces:
                    typer.echo(json.dumps({"image": str(path), "faces": 0}))
        finally:
            inference.close()


@app.command()
def bench(config: ConfigPath = None, source: SourceOpt = None, frames: Annotated[int, typer.Option(min=1)] = 300,
          warmup: Annotated[int, typer.Option(min=0)] = 30,
          as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
          out: Annotated[Path | None, typer.Option(help="also write the JSON report to this file")] = None,
          live: Annotated[bool, typer.Option(help="live mode: the source in real time, read at --fps (default "
                                                  "source.fps); reports CPU% and capture-to-publish latency")] = False,
          compare_peer: Annotated[bool, typer.Option(help="then run the fer library (peer_fer.py fps) on the same "
                                                          "video from the peer venv and report the FPS ratio")] = False,
          peer_venv: Annotated[Path, typer.Option(help="the peer venv (setup_peer.sh); env FER_PEER_VENV")] = PEER_VENV,
          mqtt: Annotated[bool, typer.Option(help="also publish to the configured broker")] = False,
          mqtt_host: MqttHost = None, mqtt_port: MqttPort = None, fps: Fps = None, model: Model = None,
          detector: Detector = None) -> None:
    """Replay (or --live) WARMUP + FRAMES frames: FPS, per-stage p50/p95/p99, end-to-end, CPU%, RSS, faces."""
    with user_errors():
        loaded = settings(config, source=source, mqtt_host=mqtt_host, mqtt_port=mqtt_port, fps=fps, model=model,
                          detector=detector)
    state, started = machine(), datetime.now(UTC).isoformat(timespec="seconds")
    mode: Literal["replay", "live"] = "live" if live else "replay"
    plan = Plan(mode=mode, console=False, mqtt=mqtt, fps=None if live else fps, max_frames=warmup + frames,
                warmup=warmup)
    code, summary = serve(loaded, plan, strict=True)
    if summary is not None:
        report = BenchReport.of(summary, loaded, warmup, mode, loaded.source.fps if live else fps, state, started)
        if compare_peer:
            peer = (run_peer(loaded.source.source, peer_venv) if not live else
                    PeerResult(str(peer_venv), 0.0, note="the peer comparison runs in replay mode only"))
            report = report.with_peer(peer)
        if out is not None:
            out.write_text(report.to_json() + "\n")
        if as_json:
            typer.echo(report.to_json())
        else:
            Console().print(report.table())
    raise typer.Exit(code)


@app.command("check-config")
def check_config(config: ConfigPath = None, source: SourceOpt = None, mqtt_host: MqttHost = None,
                 mqtt_port: MqttPort = None, fps: Fps = None, model: Model = None, detector: Detector = None) -> None:
    """Validate the config file and load its detector and model; print a summary. Nothing runs."""
    with user_errors():
        loaded = settings(config, source=source, mqtt_host=mqtt_host, mqtt_port=mqtt_port, fps=fps, model=model,
                          detector=detector)
        build_publisher(loaded, Plan(mode="live"))  # loads the TLS files; connects nowhere
        inference = build_inference(loaded)
        manifest, runtime = inference.classifier.manifest, inference.classifier.runtime
        inference.close()
    m, d = loaded.mqtt, loaded.detector
    mqtt = f"{m.host}:{m.port} qos {m.qos}" if m.enabled else "disabled"
    typer.echo(f"ok: {config_file(config) or 'defaults'}: device {loaded.device.name}, source {loaded.source.source} "
               f"at {loaded.source.fps:g} fps, detector {d.backend}, model {manifest.name} "
               f"({len(manifest.labels)} labels, {runtime}), mqtt {mqtt}")

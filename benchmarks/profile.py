"""Where the pipeline threads spend their time: py-spy samples of `fer-edge bench`, summed per thread and function.

    pip install py-spy      # not a dependency of fer-edge
    python benchmarks/profile.py [--config config.toml] [--rate 500] [--out FILE.json]

Runs `fer-edge bench` on the hamilton clip under `py-spy record --threads`, keeps the samples of the
pipeline's threads (fer-capture, fer-inference, fer-publish) and reports, per thread, how many samples it
had and its top functions: for each sample, the innermost function of edge/ on the stack and the function
it was in (`edge function > innermost`). Waiting on a queue shows up as `Pipeline._get > Condition.wait`.
py-spy slows the process down, so FPS under it is not a benchmark figure.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.bench import emit, machine  # noqa: E402

THREADS = ("fer-capture", "fer-inference", "fer-publish")


def summarise(raw: Path, top: int) -> dict[str, dict[str, object]]:
    samples: collections.Counter[str] = collections.Counter()
    functions: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0].rsplit(":", 1)[-1].strip()
        if thread not in THREADS:
            continue
        ours = [f for f in frames if "edge/" in f]
        name = (ours[-1].split(" (")[0] if ours else "?") + " > " + frames[-1].split(" (")[0]
        samples[thread] += int(count)
        functions[thread][name] += int(count)
    return {thread: {"samples": samples[thread], "top": dict(functions[thread].most_common(top))}
            for thread in THREADS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config.toml")
    parser.add_argument("--rate", type=int, default=500, help="samples per second")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).is_file():
        raise SystemExit("py-spy not found: pip install py-spy")
    video = Path(os.environ.get("FER_SHARED", ROOT.parent / "shared")) / "media" / "short_hamilton_clip.mp4"
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "samples.txt"
        done = subprocess.run([py_spy, "record", "--threads", "--format", "raw", "--rate", str(args.rate),
                               "--output", str(raw), "--", sys.executable, "-m", "edge", "bench", "--source",
                               str(video), "--config", str(args.config), "--json"],
                              capture_output=True, text=True, check=False, cwd=ROOT)
        if done.returncode != 0 or not raw.is_file():
            raise SystemExit(f"py-spy exited {done.returncode}: {done.stderr.strip()[-500:]}")
        start = done.stdout.index("{")  # py-spy prints its own lines around the report
        bench, _ = json.JSONDecoder().raw_decode(done.stdout[start:])
        report = {"machine": machine(), "config": str(args.config), "rate_hz": args.rate,
                  "fps_under_py_spy": bench["fps"], "threads": summarise(raw, args.top)}
    emit(report, args.out)


if __name__ == "__main__":
    main()

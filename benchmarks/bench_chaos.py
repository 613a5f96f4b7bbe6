"""Chaos run of `histostain predict-cohort`: killed workers and a killed main process lose nothing.

Writes N small synthetic slides and a cohort folder holding the user's own files (notes at the top,
annotations inside some slide folders, a `.staging/` folder and a `.notes.part` file of theirs).
Runs `histostain predict-cohort --workers 2` (niced) while a watcher SIGKILLs a random worker
process every few seconds and, once, the main process itself; then re-runs the cohort undisturbed.
Checks that the re-run completes every slide, that every slide folder holds exactly one complete
set of outputs (JSON, tile CSV with one row per tile, done-marker) plus the user's files, that the
summary has one row per slide (no duplicates), that nothing of ours is left behind (staging
folders, temporary files, lock) and that the user's files are byte for byte what they were.

The tile encoder is a tiny TorchScript network (`--encoder tiny`, default: feasible on two loaded
cores) or the bundled EfficientNet-Lite0 models (`--encoder bundled`).

    python benchmarks/bench_chaos.py [--slides 20] [--size 2048] [--kill-every 3] [--worker-kills 4]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def make_slides(folder: Path, n: int, size: int) -> list[Path]:
    from napari_histostain.io.synthetic import write_synthetic_slide

    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_synthetic_slide(folder / f"slide{i:02d}.tif", size, size * 3 // 4, 0.5, seed=i)
        for i in range(n)
    ]


def tiny_kit(folder: Path) -> list[str]:
    """--encoder/--marker/--model arguments of a tiny TorchScript encoder and seeded models."""
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_models import write_tiny_kit

    kit = write_tiny_kit(folder)
    args = ["--encoder", str(kit["encoder"])]
    for m, path in kit["models"].items():
        args += ["--marker", m, "--model", f"{m}={path}"]
    return args


def user_files(out: Path, slides: list[Path]) -> dict[str, bytes]:
    """Put the user's own files into the cohort folder; returns them {relative path: bytes}."""
    names = ["my-notes.txt", ".notes.part", ".staging/draft.txt"]
    names += [f"{s.stem}/my-annotations.geojson" for s in slides[::4]]
    files = {}
    for name in names:
        p = out / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f"the user's {name}\n".encode())
        files[name] = p.read_bytes()
    return files


def cohort_command(slides: list[Path], out: Path, model_args: list[str]) -> list[str]:
    return [
        "nice",
        "-n",
        "10",
        sys.executable,
        "-m",
        "napari_histostain.cli",
        "predict-cohort",
        *map(str, slides),
        "--out",
        str(out),
        "--workers",
        "2",
        "--retries",
        "5",
        "--quiet",
        *model_args,
    ]


def workers_of(main: psutil.Process) -> list[psutil.Process]:
    """The dask worker processes under the cohort's main process."""
    try:
        kids = main.children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for p in kids:
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "spawn_main" in cmd:
            out.append(p)
    return out


def chaos_run(cmd, env, *, kill_every: float, worker_kills: int, seed: int) -> dict:
    """Run `cmd`, SIGKILL a random worker every `kill_every` s (`worker_kills` times), then the
    main process; returns what happened."""
    rng = random.Random(seed)
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    main = psutil.Process(proc.pid)
    killed, orphans = [], []
    out = Path(cmd[cmd.index("--out") + 1])
    while proc.poll() is None and not list(out.glob("*/.histostain-done.json")):
        time.sleep(0.2)  # the chaos starts once the cluster works: the first slide is done
    started = round(time.time() - t0, 1)
    while proc.poll() is None and time.time() - t0 < 900:
        time.sleep(kill_every)
        ws = workers_of(main)
        if len(killed) < worker_kills:
            if ws:
                victim = rng.choice(ws)
                victim.send_signal(signal.SIGKILL)
                killed.append(round(time.time() - t0, 1))
            continue
        orphans = ws  # the main process goes now; what becomes of its workers?
        main.send_signal(signal.SIGKILL)
        break
    proc.wait(timeout=120)
    deadline = time.time() + 30
    while time.time() < deadline and any(
        p.is_running() and p.status() != "zombie" for p in orphans
    ):
        time.sleep(0.5)
    left = [p.pid for p in orphans if p.is_running() and p.status() != "zombie"]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return {
        "seconds": round(time.time() - t0, 1),
        "first_slide_done_at_s": started,
        "worker_kills_at_s": killed,
        "main_killed": proc.returncode == -signal.SIGKILL,
        "exit": proc.returncode,
        "orphaned_workers_still_running_after_30s": len(left),
        "output_tail": proc.stdout.read().decode(errors="replace")[-400:],
    }


def check(out: Path, slides: list[Path], users: dict[str, bytes]) -> dict:
    """Verify the cohort folder after the re-run; returns findings (empty lists mean all good)."""
    problems = []
    with open(out / "cohort-summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = [r["name"] for r in rows]
    if sorted(names) != sorted(s.stem for s in slides) or len(set(names)) != len(names):
        problems.append(f"summary rows {names}")
    if any(r["status"] not in ("done", "skipped") for r in rows):
        problems.append(f"statuses {[r['status'] for r in rows]}")
    for s in slides:
        folder = out / s.stem
        ours = {".histostain-done.json", f"{s.stem}.prediction.json", f"{s.stem}.tiles.csv"}
        theirs = {Path(n).name for n in users if n.startswith(f"{s.stem}/")}
        present = {p.name for p in folder.iterdir()}
        if present != ours | theirs:
            problems.append(f"{s.stem}: {sorted(present)}")
            continue
        doc = json.loads((folder / f"{s.stem}.prediction.json").read_text())
        lines = (folder / f"{s.stem}.tiles.csv").read_text().splitlines()
        if len(lines) != doc["grid"]["n_tiles"] + 1 or set(doc["markers"]) != {"p53", "ki67"}:
            problems.append(f"{s.stem}: incomplete outputs")
    leftovers = [
        str(p.relative_to(out))
        for p in out.rglob("*")
        if p.name.endswith((".histostain-staging", ".histostain-cohort.lock"))
        or (p.name.endswith(".part") and p.relative_to(out).as_posix() not in users)
    ]
    changed = [n for n, data in users.items() if (out / n).read_bytes() != data]
    return {"problems": problems, "leftovers": leftovers, "user_files_changed": changed}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slides", type=int, default=20)
    ap.add_argument("--size", type=int, default=2048, help="slide width in px (height: 3/4)")
    ap.add_argument("--kill-every", type=float, default=3.0, help="seconds between kills")
    ap.add_argument("--worker-kills", type=int, default=4)
    ap.add_argument("--encoder", choices=("tiny", "bundled"), default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", help="folder to work in (default: a temporary one)")
    args = ap.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="histostain-chaos-"))
    slides = make_slides(work / "slides", args.slides, args.size)
    model_args = tiny_kit(work) if args.encoder == "tiny" else []
    out = work / "cohort"
    users = user_files(out, slides)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    cmd = cohort_command(slides, out, model_args)

    chaos = chaos_run(
        cmd, env, kill_every=args.kill_every, worker_kills=args.worker_kills, seed=args.seed
    )
    done_after_chaos = sum((out / s.stem / ".histostain-done.json").is_file() for s in slides)
    t0 = time.time()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    result = {
        "slides": len(slides),
        "chaos": chaos,
        "slides_complete_after_chaos": done_after_chaos,
        "rerun": {
            "exit": rerun.returncode,
            "seconds": round(time.time() - t0, 1),
            "last_line": rerun.stderr.strip().splitlines()[-1] if rerun.stderr.strip() else "",
        },
        **check(out, slides, users),
    }
    print(json.dumps(result, indent=2))
    ok = rerun.returncode == 0 and not (
        result["problems"] or result["leftovers"] or result["user_files_changed"]
    )
    print("CHAOS RUN", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

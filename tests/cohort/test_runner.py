"""Cohort prediction on a real dask LocalCluster: corrupt slides, resumption, killed workers."""

from __future__ import annotations

import csv
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from napari_histostain.cohort import jobs, runner, summary
from napari_histostain.cohort.errors import CohortError
from napari_histostain.cohort.jobs import DONE_MARKER
from napari_histostain.cohort.runner import ClusterOptions, run_cohort
from napari_histostain.cohort.slides import cohort_slides, read_slide_manifest, slide_fingerprint
from napari_histostain.engine.predict import PredictOptions
from napari_histostain.io.atomic import RECORD_SUFFIX, STAGING_SUFFIX
from napari_histostain.io.manifest import ManifestError

pytestmark = pytest.mark.slow  # simulated slides, clusters or whole cohorts: seconds each


# ------------------------------------------------------------------------------------------------
# A light per-slide task (reads the real slide, writes two files) for orchestration tests.
# ------------------------------------------------------------------------------------------------
def light_task(job, out_dir, kill_on=None, kill_flag=None, hang_on=None, hang_flag=None):
    """Read the slide's thumbnail and write a prediction-like JSON + CSV; optionally die midway.

    `kill_on`: the worker kills itself on this slide (once, if `kill_flag` names a file that exists).
    `hang_on`: on this slide, write the worker's pid to `hang_flag` and wait to be killed.
    """
    import numpy as np

    from napari_histostain.io.slide import open_slide

    slide_path, markers = job.slide.path, job.markers
    with open_slide(slide_path) as slide:
        thumb = slide.thumbnail(256)
        slide.read_region((0, 0), 0, (256, 256))  # touch level 0 (a truncated file fails here)
    mean = thumb.reshape(-1, 3).mean(0) / 255.0
    stem = Path(slide_path).stem
    probs = {m: round(float(mean[i % 3]), 6) for i, m in enumerate(markers)}
    (Path(out_dir) / f"{stem}.tiles.csv").write_text(
        "tile,value\n"
        + "".join(f"{i},{v:.4f}\n" for i, v in enumerate(thumb[::32, ::32, 0].ravel()))
    )
    if kill_on and stem == kill_on and (kill_flag is None or Path(kill_flag).exists()):
        if kill_flag is not None:
            Path(kill_flag).unlink()
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies with half the outputs written
        time.sleep(30)
    if hang_on and stem == hang_on and not Path(hang_flag).exists():
        Path(hang_flag + ".tmp").write_text(str(os.getpid()))
        os.replace(hang_flag + ".tmp", hang_flag)  # the test never reads a half-written pid
        time.sleep(60)
    (Path(out_dir) / f"{stem}.prediction.json").write_text(json.dumps({"probabilities": probs}))
    return {
        "probabilities": probs,
        "calls": {m: "positive" if p > 0.5 else "negative" for m, p in probs.items()},
        "n_tiles": int(np.prod(thumb.shape[:2])),
    }


def hanging_predict(job, out_dir, hang_on=None, hang_flag=None):
    """The real per-slide prediction; on slide `hang_on` it then reports its pid and waits to die."""
    result = jobs.predict_and_save(job, out_dir)
    if Path(job.slide.path).stem == hang_on and not Path(hang_flag).exists():
        Path(hang_flag + ".tmp").write_text(str(os.getpid()))
        os.replace(hang_flag + ".tmp", hang_flag)  # the test never reads a half-written pid
        time.sleep(60)
    return result


MARKERS = ("p53", "ki67")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Seeded (untrained) model files for the real prediction path."""
    from napari_histostain.engine.model_files import save_model_file, seeded_model

    d = tmp_path_factory.mktemp("models")
    return {
        m: str(save_model_file(d / f"{m}.pt", *seeded_model(m, seed=i)))
        for i, m in enumerate(MARKERS)
    }


@pytest.fixture(scope="module")
def client():
    import cloudpickle
    from distributed import Client

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    # ...and what it pickles by value may still name `tests.*`: let the spawned workers (which
    # inherit sys.path) find the checkout's tests package, after the installed napari_histostain
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.append(root)
    cluster = runner.make_cluster(2, 1, memory_limit="2GB")
    c = Client(cluster, set_as_default=False)  # run_cohort must not rely on a default client
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def slide_dir(tmp_path_factory):
    """Four small synthetic slides + a truncated copy + a text file named .svs."""
    from napari_histostain.io.synthetic import write_synthetic_slide

    d = tmp_path_factory.mktemp("cohort_slides")
    for i in range(4):
        write_synthetic_slide(d / f"case{i}.tif", 1024, 768, 0.5, seed=i)
    data = (d / "case0.tif").read_bytes()
    (d / "truncated.tif").write_bytes(data[: len(data) // 3])
    (d / "notes.svs").write_text("this is not a slide\n")
    return d


def _slides(d: Path, good=4, bad=True):
    paths = [d / f"case{i}.tif" for i in range(good)]
    if bad:
        paths += [d / "truncated.tif", d / "notes.svs"]
    return cohort_slides(paths)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _assert_clean(out: Path):
    """No staging folders, temp files or lock files left anywhere under `out`."""
    leftovers = [
        p for p in out.rglob("*") if p.name.endswith(".part") or p.name.endswith(STAGING_SUFFIX)
    ]
    assert not leftovers
    assert not (out / runner.LOCK_FILE).exists()


# ------------------------------------------------------------------------------------------------
# No cluster needed
# ------------------------------------------------------------------------------------------------
def test_fingerprint_follows_content(tmp_path):
    f = tmp_path / "a.svs"
    f.write_bytes(b"x" * (3 << 20))
    first = slide_fingerprint(f)
    assert slide_fingerprint(f) == first
    with open(f, "r+b") as fh:  # same size, same mtime, a byte changed near the end
        st = os.stat(f)
        fh.seek((3 << 20) - 10)
        fh.write(b"y")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert slide_fingerprint(f) != first


def test_manifest_and_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    m = tmp_path / "cohort.csv"
    m.write_text("case_id,he_path,label\nC1,a/s.svs,1\nC2,b/s.svs,0\nC1,a/s.svs,1\n")
    assert read_slide_manifest(m)[0] == (str(tmp_path / "a" / "s.svs"), "C1")
    slides = cohort_slides([], manifest=m)
    assert len(slides) == 2 and len({s.name for s in slides}) == 2
    assert all(s.name.startswith("s-") for s in slides)
    listing = tmp_path / "list.txt"
    listing.write_text("# slides\n/x/one.svs\nrel/two.ndpi\n")
    assert [s.name for s in cohort_slides([], manifest=listing)] == ["one", "two"]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label\n1,2\n")
    with pytest.raises(ManifestError, match="slide path column"):
        read_slide_manifest(bad)
    with pytest.raises(CohortError, match="no slides"):
        cohort_slides([])


def test_sequential_mode_and_lock(slide_dir, tmp_path):
    out = tmp_path / "out"
    res = run_cohort(
        _slides(slide_dir, good=1),
        out,
        ("ki67",),
        task=light_task,
        cluster=ClusterOptions(workers=0),
    )
    assert res.counts["done"] == 1 and res.counts["failed"] == 2
    out.joinpath(runner.LOCK_FILE).write_text(f"{os.uname().nodename}:{os.getpid()}")
    with pytest.raises(CohortError, match="another predict-cohort run"):
        run_cohort(
            _slides(slide_dir, good=1),
            out,
            ("ki67",),
            task=light_task,
            cluster=ClusterOptions(workers=0),
        )
    out.joinpath(runner.LOCK_FILE).write_text("otherhost:1")  # cannot tell: refuse, say what to do
    with pytest.raises(CohortError, match=r"delete .*lock"):
        run_cohort(
            _slides(slide_dir, good=1),
            out,
            ("ki67",),
            task=light_task,
            cluster=ClusterOptions(workers=0),
        )
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    out.joinpath(runner.LOCK_FILE).write_text(f"{os.uname().nodename}:{gone.stdout.strip()}")
    res = run_cohort(
        _slides(slide_dir, good=1),
        out,
        ("ki67",),
        task=light_task,
        cluster=ClusterOptions(workers=0),
    )
    assert res.counts["skipped"] == 1
    _assert_clean(out)


# ------------------------------------------------------------------------------------------------
# On a LocalCluster
# ------------------------------------------------------------------------------------------------
def _single_slide_outputs(slide: Path, out: Path, models) -> dict[str, bytes]:
    """What `histostain predict` writes for `slide` (without the run time, which differs).

    Torch runs with one thread as in the cohort's workers: sums over more threads round differently.
    """
    import torch

    from napari_histostain.cli import main

    argv = ["predict", str(slide), "--out", str(out), "--quiet"]
    for m in MARKERS:
        argv += ["--marker", m, "--model", f"{m}={models[m]}"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    return _comparable(out)


def _comparable(folder: Path) -> dict:
    """Output files of a slide folder, parsed, with the per-run wall time removed."""
    out = {}
    for name, data in _files(folder).items():
        if name == DONE_MARKER or name.endswith(RECORD_SUFFIX):  # each command's own bookkeeping
            continue
        if name.endswith(".json"):
            doc = json.loads(data)
            doc.pop("seconds", None)
            out[name] = doc
        else:
            out[name] = data
    return out


def test_cohort_with_corrupt_slides_equals_single_then_skips(client, slide_dir, models, tmp_path):
    out = tmp_path / "out"
    slides = _slides(slide_dir)
    rows_seen = []
    res = run_cohort(
        slides,
        out,
        MARKERS,
        cluster=ClusterOptions(client=client),
        predict=PredictOptions(models=models),
        progress=rows_seen.append,
    )
    assert res.counts == {"done": 4, "skipped": 0, "failed": 2, "pending": 0}
    assert len(rows_seen) == 6 and not res.ok
    by_name = {r["name"]: r for r in res.rows}
    assert (
        "truncated" in by_name["truncated"]["error"] or "corrupt" in by_name["truncated"]["error"]
    )
    assert "notes.svs" in by_name["notes"]["error"]
    assert not (out / "truncated").exists() and not (out / "notes").exists()
    for i in range(4):
        folder = out / f"case{i}"
        assert sorted(_files(folder)) == sorted(
            [DONE_MARKER, f"case{i}.prediction.json", f"case{i}.tiles.csv"]
        )
        row = by_name[f"case{i}"]
        doc = json.loads((folder / f"case{i}.prediction.json").read_text())
        assert row["n_tiles"] == doc["grid"]["n_tiles"] > 0
        for m in MARKERS:
            assert row[f"{m}_probability"] == pytest.approx(
                doc["markers"][m]["probability"], abs=1e-6
            )
            assert row[f"{m}_call"] == (doc["markers"][m]["label"] or "")  # "": no call
        statuses = {e["call_status"] for e in doc["markers"].values()}
        assert row["call_status"] == ("no_call" if "no_call" in statuses else "call")
    # per-slide outputs equal those of single-slide prediction
    for i in (0, 3):
        single = _single_slide_outputs(slide_dir / f"case{i}.tif", tmp_path / f"single{i}", models)
        assert _comparable(out / f"case{i}") == single
    with open(res.summary_csv, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["name"] for r in table] == [s.name for s in slides]
    assert {r["status"] for r in table} == {"done", "failed"}
    summary = json.loads(res.summary_json.read_text())
    assert summary["counts"] == {"done": 4, "failed": 2} and summary["markers"] == list(MARKERS)
    _assert_clean(out)

    # second run: finished slides are skipped (files untouched), the failed ones are tried again
    before = {
        p: p.stat().st_mtime_ns
        for p in out.rglob("*")
        if p.is_file() and "cohort-summary" not in p.name
    }
    res2 = run_cohort(
        slides,
        out,
        MARKERS,
        cluster=ClusterOptions(client=client),
        predict=PredictOptions(models=models),
    )
    assert res2.counts == {"done": 0, "skipped": 4, "failed": 2, "pending": 0}
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert res2.rows[0]["ki67_probability"] == res.rows[0]["ki67_probability"]

    # a changed slide, other markers or another model are recomputed
    changed = tmp_path / "case9.tif"
    shutil.copy(slide_dir / "case1.tif", changed)
    one = cohort_slides([changed])
    assert (
        run_cohort(
            one,
            out,
            MARKERS,
            cluster=ClusterOptions(client=client),
            predict=PredictOptions(models=models),
        ).counts["done"]
        == 1
    )
    shutil.copy(slide_dir / "case2.tif", changed)  # same name, new content
    assert (
        run_cohort(
            one,
            out,
            MARKERS,
            cluster=ClusterOptions(client=client),
            predict=PredictOptions(models=models),
        ).counts["done"]
        == 1
    )
    assert (
        run_cohort(
            one,
            out,
            ("p53",),
            cluster=ClusterOptions(client=client),
            predict=PredictOptions(models=models),
        ).counts["done"]
        == 1
    )
    from napari_histostain.engine.model_files import save_model_file, seeded_model

    other = save_model_file(tmp_path / "other.pt", *seeded_model("p53", seed=7))
    res6 = run_cohort(
        one,
        out,
        ("p53",),
        cluster=ClusterOptions(client=client),
        predict=PredictOptions(models={"p53": str(other)}),
    )
    assert res6.counts["done"] == 1
    # a deleted output file makes a slide incomplete
    (out / "case3" / "case3.tiles.csv").unlink()
    res7 = run_cohort(
        slides[:4],
        out,
        MARKERS,
        cluster=ClusterOptions(client=client),
        predict=PredictOptions(models=models),
    )
    assert res7.counts == {"done": 1, "skipped": 3, "failed": 0, "pending": 0}
    _assert_clean(out)


def test_killed_worker_then_rerun_completes(client, slide_dir, models, tmp_path):
    """The test kills the worker process predicting case2; a re-run completes the cohort."""
    import concurrent.futures

    import psutil

    out = tmp_path / "out"
    slides = _slides(slide_dir, bad=False)
    flag = tmp_path / "hanging.pid"
    hanger = functools.partial(hanging_predict, hang_on="case2", hang_flag=str(flag))
    client.wait_for_workers(2, timeout=60)
    worker_pids = set(client.run(os.getpid).values())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(
            run_cohort,
            slides,
            out,
            MARKERS,
            task=hanger,
            cluster=ClusterOptions(client=client, retries=0),
            predict=PredictOptions(models=models),
        )
        deadline = time.time() + 120
        while not flag.exists() and time.time() < deadline:
            time.sleep(0.05)
        pid = int(flag.read_text())
        assert pid in worker_pids
        assert list(
            out.glob(f".cohort.*{STAGING_SUFFIX}/case2.*/case2.tiles.csv")
        )  # outputs staged, not final
        psutil.Process(pid).kill()
        res = running.result(timeout=120)
    assert res.counts == {"done": 3, "skipped": 0, "failed": 1, "pending": 0}
    failed = {r["name"]: r["error"] for r in res.failed}
    assert list(failed) == ["case2"] and "died" in failed["case2"]  # queued neighbours requeued
    assert not (out / "case2").exists()  # nothing half-written under the final name
    _assert_clean(out)
    client.wait_for_workers(2, timeout=60)

    res2 = run_cohort(
        slides,
        out,
        MARKERS,
        cluster=ClusterOptions(client=client),
        predict=PredictOptions(models=models),
    )
    assert res2.ok and res2.counts == {"done": 1, "skipped": 3, "failed": 0, "pending": 0}
    for i in range(4):
        assert sorted(_files(out / f"case{i}")) == sorted(
            [DONE_MARKER, f"case{i}.prediction.json", f"case{i}.tiles.csv"]
        )
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"case{i}" for i in range(4)] + [summary.SUMMARY_CSV, summary.SUMMARY_JSON]
    )
    _assert_clean(out)


def test_interrupted_run_resumes_on_scheduler_address(client, slide_dir, tmp_path):
    """Ctrl-C after the first slide: lock released, summary kept; a re-run via --scheduler finishes."""
    out = tmp_path / "out"
    slides = _slides(slide_dir, bad=False)

    def interrupt(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_cohort(
            slides,
            out,
            ("ki67",),
            task=light_task,
            cluster=ClusterOptions(client=client),
            progress=interrupt,
        )
    assert not (out / runner.LOCK_FILE).exists()
    statuses = [r["status"] for r in json.loads((out / summary.SUMMARY_JSON).read_text())["slides"]]
    assert statuses.count("done") == 1 and statuses.count("pending") == 3
    deadline = time.time() + 30  # cancelled tasks already running may still finish (atomically)
    while any(client.processing().values()) and time.time() < deadline:
        time.sleep(0.1)
    address = client.scheduler.address
    if address.startswith("tls://"):  # the local cluster admits only clients with its credentials
        with pytest.raises(CohortError, match="uses TLS"):
            run_cohort(
                slides, out, ("ki67",), task=light_task, cluster=ClusterOptions(scheduler=address)
            )
    res = run_cohort(
        slides,
        out,
        ("ki67",),
        task=light_task,
        cluster=ClusterOptions(scheduler=address, security=client.security),
    )
    assert res.ok and res.counts["skipped"] >= 1 and res.counts["done"] + res.counts["skipped"] == 4
    for i in range(4):
        assert sorted(_files(out / f"case{i}")) == sorted(
            [DONE_MARKER, f"case{i}.prediction.json", f"case{i}.tiles.csv"]
        )
    _assert_clean(out)


def test_killed_worker_is_retried(client, slide_dir, tmp_path):
    out = tmp_path / "out"
    flag = tmp_path / "kill-once"
    flag.touch()
    killer = functools.partial(light_task, kill_on="case1", kill_flag=str(flag))
    client.wait_for_workers(2, timeout=60)
    res = run_cohort(
        _slides(slide_dir, bad=False),
        out,
        ("ki67",),
        task=killer,
        cluster=ClusterOptions(client=client),
    )
    assert res.ok and res.counts["done"] == 4
    assert not flag.exists()  # the kill really happened
    by_name = {r["name"]: r for r in res.rows}
    assert by_name["case1"]["attempts"] == 2
    _assert_clean(out)


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------
def test_cli_errors(tmp_path, capsys, monkeypatch):
    from napari_histostain.cli import main

    monkeypatch.setattr(runner, "SCHEDULER_TIMEOUT", "1s")
    assert main(["predict-cohort", "--out", str(tmp_path / "o")]) == 2
    assert "no slides given" in capsys.readouterr().err
    assert (
        main(["predict-cohort", "--manifest", str(tmp_path / "nope.csv"), "--out", str(tmp_path)])
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "a.svs").write_text("x")
    assert (
        main(["predict-cohort", str(tmp_path / "a.svs"), "--model", "p53", "--out", str(tmp_path)])
        == 2
    )
    assert "MARKER=PATH" in capsys.readouterr().err
    assert (
        main(
            ["predict-cohort", "x.svs", "--out", "o", "--scheduler", "tcp://h:1", "--workers", "2"]
        )
        == 2
    )  # argparse: not both
    assert (
        main(
            [
                "predict-cohort",
                str(tmp_path / "a.svs"),
                "--out",
                str(tmp_path / "o"),
                "--scheduler",
                "tcp://127.0.0.1:9",
                "--marker",
                "ki67",
            ]
        )
        == 2
    )
    assert "could not reach the dask scheduler" in capsys.readouterr().err


def test_cli_end_to_end(slide_dir, models, tmp_path, capsys):
    """`histostain predict-cohort` with its own LocalCluster; a failed slide gives exit status 1."""
    from napari_histostain.cli import main

    out = tmp_path / "out"
    argv = [
        "predict-cohort",
        str(slide_dir / "case0.tif"),
        str(slide_dir / "notes.svs"),
        "--out",
        str(out),
        "--workers",
        "1",
        "--memory-limit",
        "2GB",
        "--no-progress",
    ]
    for m in MARKERS:
        argv += ["--marker", m, "--model", f"{m}={models[m]}"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "2 slides: 0 already done, 2 to predict" in err and "notes: failed" in err
    assert "done 1, skipped 0, failed 1" in err
    assert (out / "case0" / "case0.prediction.json").is_file()
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(f"case_id,slide\nC0,{slide_dir / 'case0.tif'}\n")
    argv = ["predict-cohort", "--manifest", str(manifest), "--out", str(out), "--no-progress"]
    for m in MARKERS:
        argv += ["--marker", m, "--model", f"{m}={models[m]}"]
    assert main(argv) == 0
    assert "1 slide: 1 already done, 0 to predict" in capsys.readouterr().err
    rows = json.loads((out / summary.SUMMARY_JSON).read_text())["slides"]
    assert [(r["case_id"], r["status"]) for r in rows] == [("C0", "skipped")]


def memory_hog(job, out_dir, hog_on=None):
    """On slide `hog_on`, grow memory 50 MB at a time (like a reader gone wild) until stopped."""
    if Path(job.slide.path).stem == hog_on:
        import numpy as np

        blocks = []
        for _ in range(80):  # up to 4 GB, far over the worker's limit
            blocks.append(np.ones(50 << 20, np.uint8))
            time.sleep(0.05)
    return light_task(job, out_dir)


def test_memory_limit_stops_one_slide_not_the_cohort(slide_dir, tmp_path):
    """A slide that needs more than the worker's memory limit fails; the others are predicted."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    out = tmp_path / "out"
    hog = functools.partial(memory_hog, hog_on="case1")
    res = run_cohort(
        _slides(slide_dir, good=3, bad=False),
        out,
        ("ki67",),
        task=hog,
        cluster=ClusterOptions(workers=1, memory_limit="700MB", retries=0),
    )
    assert res.counts == {"done": 2, "skipped": 0, "failed": 1, "pending": 0}
    assert "died" in res.failed[0]["error"] and res.failed[0]["name"] == "case1"
    assert not (out / "case1").exists()
    _assert_clean(out)


def test_real_slides_svs_dicom_ihc_and_broken(client, models, tmp_path):
    """Real files: an Aperio svs, the same slide as a DICOM folder, an IHC tiff and a broken svs."""
    from shared_data import shared_file

    svs = shared_file("slides", "CMU-1-Small-Region.svs")
    dicom = shared_file("dicom", "CMU-1-Small-Region")
    ihc = shared_file("slides", "OS-2-Ki67-crop.tiff")
    broken = shared_file("slides", "broken.svs")
    slides = cohort_slides([svs, dicom, ihc, broken])
    names = [s.name for s in slides]
    assert names[0] != names[1] and all(n.startswith("CMU-1-Small-Region-") for n in names[:2])
    out = tmp_path / "out"
    res = run_cohort(
        slides,
        out,
        ("ki67",),
        cluster=ClusterOptions(client=client),
        predict=PredictOptions(models=models),
    )
    assert res.counts == {"done": 3, "skipped": 0, "failed": 1, "pending": 0}
    by_name = {r["name"]: r for r in res.rows}
    assert "broken.svs" in by_name["broken"]["error"]
    assert by_name[names[0]]["n_tiles"] == by_name[names[1]]["n_tiles"] > 10
    ihc_doc = json.loads(next((out / "OS-2-Ki67-crop").glob("*.prediction.json")).read_text())
    assert any("IHC" in m for m in ihc_doc["messages"])  # the stain check travels with the outputs
    res2 = run_cohort(
        slides,
        out,
        ("ki67",),
        cluster=ClusterOptions(client=client),
        predict=PredictOptions(models=models),
    )
    assert res2.counts == {"done": 0, "skipped": 3, "failed": 1, "pending": 0}
    _assert_clean(out)

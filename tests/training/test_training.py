"""Trainer end to end on synthetic embeddings, gradient flow, evaluation metrics and plots, the
embedding cache (resume after interruption), and `histostain train / evaluate` on a small cohort."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_histostain.training import evaluate as ev
from napari_histostain.training.losses import LossWeights, total_loss
from napari_histostain.training.modeling import build_slide_encoder, class_logits, embed_bags
from napari_histostain.training.sampling import paired_bags
from napari_histostain.training.synthetic_bags import synthetic_cases
from napari_histostain.training.trainer import TrainConfig, cross_validate, set_seed, train_one

FAST = dict(
    epochs=15,
    batch_size=8,
    n_tokens=32,
    lr=1e-3,
    warmup_epochs=1,
    folds=1,
    model_kwargs={"hidden_dim": 32, "attn_dim": 16},
)


@pytest.fixture(scope="module")
def separable():
    return synthetic_cases(80, dim=32, seed=3)


@pytest.mark.slow
def test_training_reaches_high_val_auc_and_every_weight_moves(separable):
    cfg = TrainConfig(**FAST)
    set_seed(cfg.seed)  # train_one seeds the same way: rebuild the initial weights
    init = build_slide_encoder(32, 2, **cfg.model_kwargs).state_dict()
    res = train_one(separable[:60], separable[60:], 2, cfg)
    assert res.history[res.best_epoch]["val_auc"] >= 0.9
    assert max(h["val_auc"] for h in res.history) >= 0.9
    moved = {k: not torch.equal(v, init[k]) for k, v in res.model.state_dict().items()}
    assert all(moved.values()), (
        f"weights that did not train: {[k for k, m in moved.items() if not m]}"
    )
    assert res.history[-1]["train_infonce"] < res.history[0]["train_infonce"]


def test_every_parameter_gets_a_gradient_from_the_full_loss(separable):
    set_seed(0)
    model = build_slide_encoder(32, 2, hidden_dim=32, attn_dim=16)
    he, ihc, masked = paired_bags(
        [c.he for c in separable[:8]], [c.ihc for c in separable[:8]], 32, np.random.default_rng(0)
    )
    e = embed_bags(model, torch.from_numpy(he))
    loss, parts = total_loss(
        LossWeights(),
        he=e,
        ihc=embed_bags(model, torch.from_numpy(ihc)),
        he_masked=embed_bags(model, torch.from_numpy(masked)),
        logits=class_logits(model, e),
        labels=torch.tensor([c.label for c in separable[:8]]),
    )
    loss.backward()
    assert set(parts) == {"ce", "infonce", "mse"}
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"no gradient reaches {dead}"


def test_baseline_and_cross_validation_by_case(separable):
    cfg = TrainConfig(
        **{**FAST, "epochs": 3, "folds": 3, "contrastive_weight": 0.0, "mse_weight": 0.0}
    )
    rows = []
    results = cross_validate(separable[:36], 2, cfg, log_rows=rows.append)
    assert len(results) == 3
    assert [r.fold for r in results] == [0, 1, 2] and len(rows) == 9
    val_ids = [i for r in results for i in r.val_case_ids]
    assert sorted(val_ids) == sorted(c.case_id for c in separable[:36])  # each case validated once
    assert all(np.isnan(r["train_infonce"]) for r in rows)
    for r in results:
        assert r.best_val_loss == min(h["val_loss"] for h in r.history)


def test_unlearnable_label_stays_near_chance():
    cases = synthetic_cases(60, dim=32, seed=5, signal=0.0)
    res = train_one(cases[:40], cases[40:], 2, TrainConfig(**{**FAST, "epochs": 3}))
    assert res.history[-1]["val_auc"] < 0.85


# ------------------------------------------------------------------------------ evaluation


def test_metrics_bootstrap_and_alignment_by_hand():
    y = np.array([0, 0, 1, 1, 1, 0, 1, 0])
    perfect = np.eye(2)[y]
    rep = ev.classification_report(y, perfect, n_bootstrap=200)
    assert rep["weighted_f1"] == 1.0 and rep["weighted_f1_ci"] == [1.0, 1.0] and rep["auc"] == 1.0
    pred = y.copy()
    pred[[0, 3]] = 1 - pred[[0, 3]]  # two mistakes
    point, lo, hi = ev.bootstrap_ci(ev.weighted_f1, y, pred, n=300)
    assert point == pytest.approx(0.75)
    assert lo <= point <= hi and hi - lo > 0
    eye = np.eye(2)
    assert np.allclose(ev.alignment_scores(eye, eye), [1, 1])  # own cosine 1, others 0
    assert np.allclose(ev.alignment_scores(eye, eye[::-1]), [-1, -1])
    three = np.array([[1.0, 0], [0, 1], [1, 1]])
    # case 0: own 1, others (0 + 1/sqrt2) / 2
    assert ev.alignment_scores(three, three)[0] == pytest.approx(1 - (1 / np.sqrt(2)) / 2)
    rep = ev.alignment_report(three, three, n_bootstrap=50)
    assert rep["retrieval_top1"] == 1.0 and rep["chance_top1"] == pytest.approx(1 / 3)


def test_wilcoxon_and_linear_probe():
    rng = np.random.default_rng(1)
    a = rng.random(40)
    assert ev.wilcoxon_paired(a, a)["p_value"] == 1.0
    res = ev.wilcoxon_paired(a, a + 0.2 + 0.01 * rng.random(40))
    assert res["p_value"] < 1e-3 and res["median_difference"] < 0
    y = rng.integers(0, 2, 120)
    x = rng.normal(size=(120, 10)) + y[:, None] * 1.5
    prob = ev.linear_probe(x[:80], y[:80], x[80:], n_classes=2)
    assert prob.shape == (40, 2) and ev.roc_auc(y[80:], prob) > 0.9
    assert np.isnan(ev.roc_auc(np.zeros(5, int), np.full((5, 2), 0.5)))


def test_plots_are_written(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 30)
    prob = np.clip(np.eye(2)[y] * 0.5 + rng.random((30, 2)) * 0.5, 0.01, None)
    prob /= prob.sum(1, keepdims=True)
    paths = [
        ev.plot_roc(tmp_path / "roc.png", y, {"model": prob}, ["neg", "pos"], "ROC"),
        ev.plot_confusion(tmp_path / "cm.png", y, prob.argmax(1), ["neg", "pos"], "CM"),
        ev.plot_embedding(
            tmp_path / "emb.png",
            rng.normal(size=(30, 8)),
            rng.normal(size=(30, 8)),
            y,
            ["neg", "pos"],
            "emb",
        ),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


# ------------------------------------------------------------------------------ cache


@pytest.fixture(scope="module")
def tiny_slides(tmp_path_factory):
    from napari_histostain.io.synthetic import write_synthetic_slide

    d = tmp_path_factory.mktemp("cache_slides")
    return [write_synthetic_slide(d / f"s{i}.tif", 480, 480, 1.0, seed=i) for i in range(3)]


@pytest.fixture(scope="module")
def encoder():
    from napari_histostain.engine.encoders import get_encoder

    return get_encoder("efficientnet-lite0")


def _cache(folder, root, **kw):
    from napari_histostain.training.cache import EmbeddingCache

    return EmbeddingCache(
        folder,
        encoder_id="efficientnet-lite0",
        encoder_version="t",
        tile_mpp=2.0,
        tile_size=112,
        min_tissue=0.0,
        root=root,
        **kw,
    )


def test_interrupted_cache_run_resumes_to_an_identical_cache(tmp_path, tiny_slides, encoder):
    from napari_histostain.training.cache import embed_slides

    root = tiny_slides[0].parent
    full = _cache(tmp_path / "full", root)
    s = embed_slides(tiny_slides, full, encoder, progress=False)
    assert len(s.embedded) == 3 and s.tiles > 0
    part = _cache(tmp_path / "part", root)
    calls = iter([False, True])  # "interrupt" after the first slide
    s1 = embed_slides(tiny_slides, part, encoder, progress=False, stop=lambda: next(calls))
    assert len(s1.embedded) == 1 and len(list((tmp_path / "part").glob("*.npz"))) == 1
    assert not list((tmp_path / "part").glob("*.part"))  # nothing half-written
    s2 = embed_slides(tiny_slides, part, encoder, progress=False)
    assert len(s2.embedded) == 2 and len(s2.skipped) == 1
    for p in tiny_slides:
        a, b = full.load(p), part.load(p)
        assert a.features.dtype == np.float16 and a.features.shape[1] == encoder.dim
        assert np.array_equal(a.features, b.features) and np.array_equal(a.coords, b.coords)
        assert a.meta["encoder_id"] == "efficientnet-lite0" and a.meta["encoder_version"] == "t"
    s3 = embed_slides(tiny_slides, part, encoder, progress=False)  # all finished: nothing to do
    assert not s3.embedded and len(s3.skipped) == 3


def test_cache_refuses_other_settings_and_reports_missing_slides(tmp_path, tiny_slides):
    from napari_histostain.training.cache import CacheError, EmbeddingCache

    c = _cache(tmp_path / "c", tiny_slides[0].parent)
    c.check_or_create()
    other = EmbeddingCache(
        tmp_path / "c",
        encoder_id="other-net",
        encoder_version="t",
        tile_mpp=2.0,
        tile_size=112,
        min_tissue=0.0,
    )
    with pytest.raises(
        CacheError, match="encoder_id: 'efficientnet-lite0' \\(cache\\) vs 'other-net'"
    ):
        other.check_or_create()
    with pytest.raises(CacheError, match="not in the embedding cache"):
        c.load(tiny_slides[0])
    with pytest.raises(CacheError, match=r"no cache\.json"):
        EmbeddingCache.open(tmp_path / "nowhere")


# ------------------------------------------------------------------------------ CLI end to end


@pytest.fixture(scope="module")
def cached_cohort(tmp_path_factory):
    """A manifest of 64 cases (slides not on disk) with their embeddings in a cache."""
    from napari_histostain.training.cache import EmbeddingCache, SlideEmbeddings

    d = tmp_path_factory.mktemp("cohort")
    cases = synthetic_cases(64, dim=32, seed=11)
    cache = EmbeddingCache(d / "cache", encoder_id="synthetic-32", encoder_version="1", root=d)
    cache.check_or_create()
    lines = ["case_id,marker,he_path,ihc_path,label"]
    for c in cases:
        he, ihc = d / "slides" / f"{c.case_id}_HE.tif", d / "slides" / f"{c.case_id}_ki67.tif"
        for p, f in ((he, c.he), (ihc, c.ihc)):
            cache.save(
                p, SlideEmbeddings(f, np.zeros((len(f), 2), np.int64), np.ones(len(f), np.float32))
            )
        lines.append(f"{c.case_id},ki67,slides/{he.name},slides/{ihc.name},{c.label}")
    (d / "manifest.csv").write_text("\n".join(lines) + "\n")
    return d


@pytest.mark.slow
def test_cli_train_and_evaluate(cached_cohort, tmp_path):
    from napari_histostain.cli import main
    from napari_histostain.engine.model_files import load_model_file

    d = cached_cohort
    common = [
        str(d / "manifest.csv"),
        "--cache",
        str(d / "cache"),
        "--marker",
        "ki67",
        "--epochs",
        "10",
        "--folds",
        "2",
        "--n-tokens",
        "32",
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
        "--hidden-dim",
        "32",
        "--quiet",
    ]
    assert (
        main(
            [
                "train",
                *common,
                "--out",
                str(tmp_path / "run"),
                "--model-file",
                str(tmp_path / "m.pt"),
            ]
        )
        == 0
    )
    assert main(["train", *common, "--out", str(tmp_path / "base"), "--only-class-loss"]) == 0
    summary = json.loads((tmp_path / "run" / "train.json").read_text())
    assert summary["n_train_cases"] + summary["n_test_cases"] == 64
    assert 0 <= summary["cv_out_of_fold"]["auc"] <= 1 and len(summary["folds"]) == 2
    base = json.loads((tmp_path / "base" / "train.json").read_text())
    assert base["cv_out_of_fold"]["auc"] > 0.8 and base["config"]["contrastive_weight"] == 0
    metrics = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert metrics[0].startswith("fold,epoch,lr,train_loss") and len(metrics) == 1 + 2 * 10
    _model, cfg = load_model_file(tmp_path / "m.pt", marker="ki67")
    assert cfg.embedding_dim == 32 and cfg.training["loss"] == "infonce+mse+ce"
    assert cfg.training["command"].startswith("histostain ")
    out = tmp_path / "report"
    assert (
        main(
            [
                "evaluate",
                str(d / "manifest.csv"),
                "--cache",
                str(d / "cache"),
                "--model",
                str(tmp_path / "run" / "model.pt"),
                "--baseline",
                str(tmp_path / "base" / "model.pt"),
                "--out",
                str(out),
                "--bootstrap",
                "100",
                "--annotate",
                str(tmp_path / "a.pt"),
            ]
        )
        == 0
    )
    rep = json.loads((out / "report.json").read_text())
    assert rep["n_test"] == summary["n_test_cases"]
    head = rep["HistoStainAlign"]["head"]
    assert head["weighted_f1_ci"][0] <= head["weighted_f1"] <= head["weighted_f1_ci"][1]
    assert 0 <= rep["wilcoxon_per_case_log_loss"]["p_value"] <= 1
    assert "linear_probe" in rep["CE-only baseline"] and "alignment" in rep["HistoStainAlign"]
    assert "bayes_optimal" not in rep  # not a simulated cohort
    _, annotated = load_model_file(tmp_path / "a.pt", marker="ki67")
    assert annotated.metrics["held_out"]["weighted_f1"] == pytest.approx(head["weighted_f1"])
    assert "not for clinical use" in annotated.description
    for k in ("roc", "confusion", "embedding", "reliability"):
        assert Path(rep["plots"][k]).stat().st_size > 5000
    # calibration: ECE and log-loss with CIs, for the model (at its temperature) and the baseline
    for name in ("HistoStainAlign", "CE-only baseline"):
        cal = rep[name]["calibration"]
        assert cal["ece_ci"][0] <= cal["ece"] <= cal["ece_ci"][1] and 0 <= cal["ece"] <= 1
        assert cal["log_loss_ci"][0] <= cal["log_loss"] <= cal["log_loss_ci"][1]
        assert sum(n for _, _, n in cal["reliability"]) == rep["n_test"]
    cal = rep["HistoStainAlign"]["calibration"]
    assert cal["temperature"] == pytest.approx(cfg.calibration.get("temperature", 1.0))
    assert annotated.metrics["held_out"]["ece"] == pytest.approx(cal["ece"])
    assert annotated.metrics["held_out"]["ce_only_log_loss"] == pytest.approx(
        rep["CE-only baseline"]["calibration"]["log_loss"]
    )
    # an external test cohort: every case is a test case (here the training cases as well, which
    # the model fits at least about as well as the held-out ones), no probe, own key in the file
    ext = tmp_path / "external"
    assert (
        main(
            [
                "evaluate",
                str(d / "manifest.csv"),
                "--cache",
                str(d / "cache"),
                "--model",
                str(tmp_path / "a.pt"),
                "--out",
                str(ext),
                "--bootstrap",
                "50",
                "--external",
                "--annotate",
                str(tmp_path / "a.pt"),
            ]
        )
        == 0
    )
    erep = json.loads((ext / "report.json").read_text())
    assert erep["external"] and erep["n_test"] == 64 and erep["n_train"] == 0
    assert "linear_probe" not in erep["HistoStainAlign"]
    assert erep["HistoStainAlign"]["head"]["auc"] > head["auc"] - 0.05
    _, annotated = load_model_file(tmp_path / "a.pt", marker="ki67")
    assert annotated.metrics["external_test"]["n_test"] == 64
    assert annotated.metrics["held_out"]["weighted_f1"] == pytest.approx(head["weighted_f1"])
    # a second external cohort goes under its own key and leaves the first one as it was
    assert (
        main(
            [
                "evaluate",
                str(d / "manifest.csv"),
                "--cache",
                str(d / "cache"),
                "--model",
                str(tmp_path / "a.pt"),
                "--out",
                str(tmp_path / "ext2"),
                "--bootstrap",
                "20",
                "--external",
                "--annotate",
                str(tmp_path / "a.pt"),
                "--metrics-key",
                "external_test_2",
            ]
        )
        == 0
    )
    _, again = load_model_file(tmp_path / "a.pt", marker="ki67")
    assert again.metrics["external_test_2"]["n_test"] == 64
    assert again.metrics["external_test"] == annotated.metrics["external_test"]


@pytest.mark.slow
def test_cli_train_refit_on_all_training_cases(cached_cohort, tmp_path):
    """--refit trains the saved model on every training case, stopped at the folds' median best
    epoch; it is a new model (not a fold's), and still separates the classes."""
    from napari_histostain.cli import main
    from napari_histostain.engine.model_files import load_model_file
    from napari_histostain.training.workflow import evaluate_marker

    d = cached_cohort
    common = [
        str(d / "manifest.csv"),
        "--cache",
        str(d / "cache"),
        "--marker",
        "ki67",
        "--epochs",
        "10",
        "--folds",
        "2",
        "--n-tokens",
        "32",
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
        "--hidden-dim",
        "32",
        "--quiet",
        "--only-class-loss",
    ]
    assert main(["train", *common, "--out", str(tmp_path / "refit"), "--refit"]) == 0
    assert main(["train", *common, "--out", str(tmp_path / "fold")]) == 0
    refit = json.loads((tmp_path / "refit" / "train.json").read_text())
    fold = json.loads((tmp_path / "fold" / "train.json").read_text())
    best = sorted(f["best_epoch"] for f in refit["folds"])
    assert refit["selected_fold"] == "refit" and fold["refit"] is None
    assert refit["refit"]["epochs"] == int(np.median(best)) + 1
    assert refit["refit"]["n_cases"] == refit["n_train_cases"]
    assert refit["folds"] == fold["folds"]  # the same cross-validation before the refit
    state_a, state_b = (
        load_model_file(tmp_path / r / "model.pt", marker="ki67")[0].state_dict()
        for r in ("refit", "fold")
    )
    assert any(not torch.equal(state_a[k], state_b[k]) for k in state_a)
    rep = evaluate_marker(
        d / "manifest.csv",
        d / "cache",
        tmp_path / "refit" / "model.pt",
        tmp_path / "report",
        n_bootstrap=50,
    )
    assert rep["HistoStainAlign"]["head"]["auc"] > 0.8


def test_cli_errors_are_clear(cached_cohort, tmp_path, capsys):
    from napari_histostain.cli import main

    d = cached_cohort
    assert (
        main(
            [
                "train",
                str(d / "manifest.csv"),
                "--cache",
                str(tmp_path / "empty"),
                "--marker",
                "ki67",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert "no cache.json" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                str(d / "manifest.csv"),
                "--cache",
                str(d / "cache"),
                "--marker",
                "p53",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert "no cases for marker 'p53'" in capsys.readouterr().err


# ------------------------------------------------------------------------------ simulated slides


def test_optical_density_tissue_finds_faint_ihc_sections(tmp_path):
    from napari_histostain.engine.tiling import make_grid
    from napari_histostain.io.slide import open_slide
    from napari_histostain.simulate.cohort import simulate_case
    from napari_histostain.training.cache import optical_density_tissue

    case = simulate_case(tmp_path, ("ki67",), case_id="c0", size_um=900, seed=4)
    for path in (case.he_path, case.ihc_paths["ki67"]):
        with open_slide(path) as slide:
            mask = optical_density_tissue(slide)
            assert 0.1 < mask.fraction < 0.9
            assert len(make_grid(slide, tissue=mask)) >= 3


def test_bayes_reference_and_relative_manifest(tmp_path):
    from napari_histostain.training.build_cohort import relative_manifest
    from napari_histostain.training.reference import bayes_reference

    (tmp_path / "cohort.json").write_text(
        json.dumps(
            {"bayes_optimal": {"ki67": {"best_weighted_f1": 0.82, "auc": 0.9, "n_monte_carlo": 10}}}
        )
    )
    m = tmp_path / "manifest.csv"
    m.write_text(
        "case_id,marker,he_path,ihc_path,label\n"
        f"a,ki67,{tmp_path / 'a' / 'he.tif'},{tmp_path / 'a' / 'ki.tif'},1\n"
    )
    assert bayes_reference(m, marker="ki67")["weighted_f1"] == 0.82
    assert bayes_reference(m, marker="p53") is None
    assert bayes_reference(tmp_path / "x" / "manifest.csv", marker="ki67") is None
    relative_manifest(m)
    assert m.read_text().splitlines()[1] == "a,ki67,a/he.tif,a/ki.tif,1"


def test_bayes_rule_on_the_held_out_cases(tmp_path):
    from napari_histostain.simulate.bayes import posterior
    from napari_histostain.simulate.params import drive_noise_sd
    from napari_histostain.training.evaluate import (
        calibration_error,
        per_case_log_loss,
        weighted_f1,
    )
    from napari_histostain.training.manifest import CohortCase
    from napari_histostain.training.reference import case_posteriors, held_out_reference

    rng = np.random.default_rng(0)
    drives = rng.uniform(-0.3, 1.0, 40)
    labels = (drives + 0.1 * rng.standard_normal(40) >= 0.2).astype(int)
    cases = []
    for i, d in enumerate(drives):
        folder = tmp_path / f"c{i}"
        folder.mkdir()
        (folder / f"c{i}.json").write_text(
            json.dumps(
                {
                    "difficulty": 1.0,
                    "cutoffs": {"ki67": 0.2},
                    "latents": {"ki67": {"drive": float(d)}},
                }
            )
        )
        cases.append(
            CohortCase(f"c{i}", "ki67", folder / "he.tif", folder / "ki.tif", str(labels[i]))
        )
    post = case_posteriors(cases, "ki67")
    np.testing.assert_allclose(post, posterior("ki67", drives, drive_noise_sd("ki67", 1.0), 0.2))
    assert post[np.argmax(drives)] > 0.9 and post[np.argmin(drives)] < 0.1
    # the model that follows the Bayes rule has no gap; one that inverts it has a large one
    rule = np.stack([1 - post, post], 1)
    same = held_out_reference(labels, rule, post, 0.5, n_bootstrap=50)
    assert same["gap"] == 0 and same["gap_ci"] == [0, 0]
    assert same["weighted_f1"] == weighted_f1(labels, (post >= 0.5).astype(int))
    # the posterior's own calibration on these cases: its ECE and where a calibrated model's falls
    assert same["ece"] == pytest.approx(calibration_error(labels, rule))
    assert same["log_loss"] == pytest.approx(per_case_log_loss(labels, rule).mean())
    assert same["ece_if_calibrated"]["median"] > 0
    worse = held_out_reference(labels, rule[:, ::-1], post, 0.5, n_bootstrap=50)
    assert worse["gap"] > 0.5 and worse["gap_ci"][0] > 0.3
    (tmp_path / "c3" / "c3.json").unlink()  # not a simulated case: no reference
    assert case_posteriors(cases, "ki67") is None


def test_cli_embed_resumes(tiny_slides, tmp_path, capsys):
    from napari_histostain.cli import main

    a, b, c = tiny_slides
    m = tmp_path / "manifest.csv"
    m.write_text(f"case_id,marker,he_path,ihc_path,label\nx,ki67,{a},{b},0\ny,ki67,{a},{c},1\n")
    args = [
        "embed",
        str(m),
        "--cache",
        str(tmp_path / "cache"),
        "--tile-mpp",
        "2",
        "--tile-size",
        "112",
        "--min-tissue",
        "0.1",
        "--quiet",
    ]
    assert main([*args, "--limit", "1"]) == 0
    assert "embedded 1 slide(s)" in capsys.readouterr().out
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "embedded 2 slide(s)" in out and "1 already cached" in out
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 3  # the shared H&E once


@pytest.mark.slow
def test_build_cohort_he_only_embeds_just_the_he_slides(tmp_path):
    """`histostain build-cohort --he-only`: every H&E slide is cached, no IHC slide is."""
    from napari_histostain.training.build_cohort import build
    from napari_histostain.training.cache import EmbeddingCache
    from napari_histostain.training.manifest import load_manifest

    info = build(
        tmp_path / "cohort",
        tmp_path / "cache",
        2,
        size_um=448.0,
        seed=5,
        workers=1,
        embed_workers=1,
        device="cpu",
        he_only=True,
    )
    m = load_manifest(tmp_path / "cohort" / "manifest.csv")
    cache = EmbeddingCache.open(tmp_path / "cache", root=m.path.parent)
    assert info["he_only"] and info["slides"] == len(m.he_paths()) == 2
    assert all(cache.has(p) for p in m.he_paths())
    assert not any(cache.has(c.ihc_path) for c in m.cases) and len(m.cases) == 6

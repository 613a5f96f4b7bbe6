"""Losses against hand-computed values, token sampling and masking, the LR schedule, folds."""

import math

import numpy as np
import pytest
import torch

from napari_histostain.training.losses import (
    LossWeights,
    class_loss,
    info_nce,
    masked_mse,
    total_loss,
)
from napari_histostain.training.sampling import mask_keep, paired_bags, sample_tokens
from napari_histostain.training.trainer import kfold_by_case, lr_factor


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def test_info_nce_identity_pairs_by_hand():
    # cosine matrix = identity; each row: -log(e^(1/T) / (e^(1/T) + e^0))
    eye = t([[1, 0], [0, 1]])
    assert float(info_nce(eye, eye, 1.0)) == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    assert float(info_nce(eye, eye, 0.5)) == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)
    # swapped pairs: the right partner has cosine 0, the wrong one 1
    swapped = t([[0, 1], [1, 0]])
    assert float(info_nce(eye, swapped, 1.0)) == pytest.approx(math.log(1 + math.e), abs=1e-6)
    # embeddings are L2-normalised first: scale does not matter
    assert float(info_nce(t([[2, 0], [0, 3]]), t([[5, 0], [0, 0.1]]), 1.0)) == pytest.approx(
        math.log(1 + math.exp(-1)), abs=1e-6
    )


def test_info_nce_is_symmetric_mean_of_both_directions_by_hand():
    he = t([[1, 0], [0, 1]])
    ihc = t([[1, 0], [1, 1]])  # cos matrix S = [[1, r], [0, r]], r = 1/sqrt(2)
    r = 1 / math.sqrt(2)
    he_to_ihc = (
        -math.log(math.e / (math.e + math.exp(r))) - math.log(math.exp(r) / (1 + math.exp(r)))
    ) / 2
    ihc_to_he = (-math.log(math.e / (math.e + 1)) + math.log(2)) / 2  # S.T = [[1, 0], [r, r]]
    expected = (he_to_ihc + ihc_to_he) / 2
    assert float(info_nce(he, ihc, 1.0)) == pytest.approx(expected, abs=1e-6)
    assert float(info_nce(ihc, he, 1.0)) == pytest.approx(expected, abs=1e-6)


def test_info_nce_default_temperature_sharpens():
    he = t([[1, 0], [0.6, 0.8]])
    # at T = 0.01 a correct ranking gives almost zero loss, a wrong one a huge loss
    assert float(info_nce(he, he)) < 1e-6
    assert float(info_nce(he, he.flip(0))) > 10
    with pytest.raises(ValueError):
        info_nce(he, t([[1, 0, 0]]))


def test_masked_mse_and_class_loss_by_hand():
    assert float(masked_mse(t([[1, 2]]), t([[3, 2]]))) == pytest.approx(2.0)
    assert float(masked_mse(t([[1, 2], [0, 0]]), t([[1, 2], [2, 0]]))) == pytest.approx(1.0)
    logits = t([[0.0, math.log(3)]])  # softmax = (1/4, 3/4)
    assert float(class_loss(logits, torch.tensor([1]))) == pytest.approx(-math.log(0.75), abs=1e-6)
    assert float(class_loss(logits, torch.tensor([0]))) == pytest.approx(-math.log(0.25), abs=1e-6)


def test_total_loss_weights_and_baseline():
    he, ihc = t([[1, 0], [0, 1]]), t([[0, 1], [1, 0]])
    masked = t([[1, 1], [0, 1]])
    logits, labels = t([[0.0, 0.0], [0.0, 0.0]]), torch.tensor([0, 1])
    w = LossWeights(contrastive=2.0, masked_mse=3.0, classification=0.5, temperature=1.0)
    total, parts = total_loss(w, he=he, ihc=ihc, he_masked=masked, logits=logits, labels=labels)
    assert parts["ce"] == pytest.approx(math.log(2), abs=1e-6)
    assert parts["infonce"] == pytest.approx(math.log(1 + math.e), abs=1e-6)
    assert parts["mse"] == pytest.approx(0.25)
    assert float(total) == pytest.approx(
        0.5 * math.log(2) + 2 * math.log(1 + math.e) + 0.75, abs=1e-5
    )
    base = LossWeights.only_class()
    assert base.is_baseline and base.temperature == 0.01
    total, parts = total_loss(base, he=he, ihc=ihc, he_masked=masked, logits=logits, labels=labels)
    assert set(parts) == {"ce"} and float(total) == pytest.approx(math.log(2), abs=1e-6)


def test_sample_tokens_with_and_without_replacement():
    rng = np.random.default_rng(0)
    many = sample_tokens(10_000, 4096, rng)
    assert len(many) == 4096 and len(np.unique(many)) == 4096  # enough tiles: no repeats
    few = sample_tokens(30, 4096, rng)
    assert len(few) == 4096 and set(few) == set(range(30))  # fewer: with replacement, all used
    assert np.array_equal(
        sample_tokens(50, 20, np.random.default_rng(3)),
        sample_tokens(50, 20, np.random.default_rng(3)),
    )
    with pytest.raises(ValueError):
        sample_tokens(0, 10, rng)


def test_mask_keeps_half_of_the_tokens():
    rng = np.random.default_rng(1)
    keep = mask_keep(4096, 0.5, rng)
    assert len(keep) == 2048 and len(np.unique(keep)) == 2048 and np.all(np.diff(keep) > 0)
    assert len(mask_keep(7, 0.5, rng)) == 4  # round(3.5) -> 4 (banker's rounding gives 4)
    assert len(mask_keep(1, 0.5, rng)) == 1  # never an empty bag
    with pytest.raises(ValueError):
        mask_keep(10, 1.0, rng)


def test_paired_bags_masked_bag_is_a_subset_of_the_he_bag():
    rng = np.random.default_rng(2)
    he = [np.arange(40, dtype=np.float32).reshape(20, 2), np.ones((3, 2), np.float32)]
    ihc = [np.zeros((5, 2), np.float32), np.zeros((50, 2), np.float32)]
    a, b, m = paired_bags(he, ihc, 16, rng, mask_ratio=0.5)
    assert a.shape == (2, 16, 2) and b.shape == (2, 16, 2) and m.shape == (2, 8, 2)
    rows = {tuple(r) for r in a[0]}
    assert all(tuple(r) in rows for r in m[0])


def test_lr_schedule_warmup_then_cosine():
    f = [lr_factor(s, 10, 110) for s in range(110)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert np.all(np.diff(f[:10]) > 0) and np.all(np.diff(f[10:]) <= 1e-12)
    assert f[60] == pytest.approx(0.01 + 0.99 * 0.5, abs=1e-9)  # half-way through the cosine
    assert lr_factor(110, 10, 110) == pytest.approx(0.01)


def test_kfold_by_case_is_stratified_fixed_and_honours_given_folds():
    ids = [f"c{i}" for i in range(40)]
    labels = [i % 4 == 0 for i in range(40)]
    folds = kfold_by_case(ids, labels, 5, seed=0)
    assert folds == kfold_by_case(ids, labels, 5, seed=0)
    for k in range(5):
        members = [lab for lab, f in zip(labels, folds) if f == k]
        assert len(members) == 8 and sum(members) == 2
    assert kfold_by_case(ids, labels, 5, given=[i % 5 for i in range(40)]) == [
        i % 5 for i in range(40)
    ]

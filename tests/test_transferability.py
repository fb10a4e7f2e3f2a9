"""LogME, nearest-centroid accuracy and the feature shift statistic on hand-made numpy features."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tunelab.advice.transferability import feature_stat_distance, logme, nearest_centroid_accuracy


def clusters(n_per_class: int, dim: int, classes: int, spread: float = 4.0, seed: int = 0):
    """Well separated Gaussian clusters: each class's mean is a random direction scaled by `spread`."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(classes, dim)) * spread / math.sqrt(dim) * 3
    labels = np.repeat(np.arange(classes), n_per_class)
    return means[labels] + rng.normal(size=(len(labels), dim)), labels


def log_marginal(features: np.ndarray, y: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """log N(y | 0, I / beta + F F^T / alpha) evaluated directly, for arrays of (alpha, beta)."""
    n = len(y)
    cov = np.eye(n) / beta[..., None, None] + (features @ features.T) / alpha[..., None, None]
    _, logdet = np.linalg.slogdet(cov)
    quad = np.einsum("i,...i->...", y, np.linalg.solve(cov, np.broadcast_to(y, cov.shape[:-1])[..., None])[..., 0])
    return -0.5 * (n * math.log(2 * math.pi) + logdet + quad)


def brute_force_logme(features: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """The evidence maximised by a coarse-to-fine grid over (log alpha, log beta), averaged over classes, / N."""
    scores = []
    for c in range(num_classes):
        y = (labels == c).astype(np.float64)
        la, lb = np.linspace(-12, 12, 31), np.linspace(-12, 12, 31)
        for _ in range(4):
            grid_a, grid_b = np.meshgrid(la, lb, indexing="ij")
            values = log_marginal(features, y, np.exp(grid_a), np.exp(grid_b))
            i, j = np.unravel_index(np.argmax(values), values.shape)
            best = values[i, j]
            step_a, step_b = la[1] - la[0], lb[1] - lb[0]
            la = np.linspace(la[i] - 2 * step_a, la[i] + 2 * step_a, 31)
            lb = np.linspace(lb[j] - 2 * step_b, lb[j] + 2 * step_b, 31)
        scores.append(best)
    return float(np.mean(scores) / len(labels))


def test_logme_prefers_features_that_predict_the_labels():
    features, labels = clusters(60, 16, 3)
    shuffled = np.random.default_rng(1).permutation(labels)
    assert logme(features, labels, 3) > logme(features, shuffled, 3) + 0.2


@pytest.mark.parametrize("n, d", [(40, 6), (50, 3), (12, 30)])
def test_logme_matches_a_brute_force_evidence_maximisation(n, d):
    rng = np.random.default_rng(n + d)
    features = rng.normal(size=(n, d))
    weights = rng.normal(size=(d, 3))
    labels = np.argmax(features @ weights + rng.normal(size=(n, 3)), axis=1)  # noisy: an interior optimum
    expected = brute_force_logme(features, labels, 3)
    assert logme(features, labels, 3) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("n, d", [(10, 200), (30, 30), (300, 8)])
def test_logme_is_finite_whether_there_are_more_examples_or_more_dimensions(n, d):
    features, labels = clusters(n // 2, d, 2)
    assert math.isfinite(logme(features, labels, 2))
    shuffled = np.random.default_rng(0).permutation(labels)
    assert math.isfinite(logme(features, shuffled, 2))


def test_logme_is_invariant_to_feature_scale_and_repeated_rows():
    features, labels = clusters(20, 50, 2)
    score = logme(features, labels, 2)
    assert logme(features * 1000.0, labels, 2) == pytest.approx(score, abs=1e-6)
    # Duplicating every row would otherwise let the evidence grow without bound (N < D here).
    doubled = logme(np.concatenate([features, features]), np.concatenate([labels, labels]), 2)
    assert doubled == pytest.approx(score, abs=1e-9)


def test_logme_skips_classes_that_do_not_occur_and_checks_shapes():
    features, labels = clusters(20, 5, 2)
    assert logme(features, labels, 5) == pytest.approx(logme(features, labels, 2))
    with pytest.raises(ValueError):
        logme(features, labels[:-1], 2)


def test_nearest_centroid_is_perfect_on_separable_clusters_and_chance_on_shuffled_labels():
    features, labels = clusters(100, 16, 4)
    features = features + 50.0  # a large shared offset, as in raw CNN features: centring must remove it
    assert nearest_centroid_accuracy(features, labels) >= 0.99
    shuffled = np.random.default_rng(0).permutation(labels)
    assert abs(nearest_centroid_accuracy(features, shuffled) - 0.25) < 0.1
    assert nearest_centroid_accuracy(features, labels, folds=3, seed=1) >= 0.99


def test_feature_stat_distance_is_zero_for_equal_sets_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 4))
    assert feature_stat_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    b = rng.normal(size=(4000, 4))
    shifted = b + 2.0  # mean moves by 2 in every dimension: 4 per dimension
    near, far = feature_stat_distance(a, b), feature_stat_distance(a, shifted)
    assert near < 0.02
    assert far == pytest.approx(4.0, rel=0.05)
    assert feature_stat_distance(shifted, a) == pytest.approx(far, rel=1e-6)
    assert feature_stat_distance(a, b * 3.0) > 1.0  # wider spread, same mean
    with pytest.raises(ValueError):
        feature_stat_distance(a, rng.normal(size=(10, 3)))


def test_feature_stat_distance_with_fewer_rows_than_dimensions_matches_the_covariance_formula():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(30, 50)) @ rng.normal(size=(50, 50))
    b = rng.normal(size=(20, 50)) @ rng.normal(size=(50, 50)) + 1.0
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root @ cov_b @ root), 0, None)))
    mean = np.sum((a.mean(0) - b.mean(0)) ** 2)
    expected = (mean + np.trace(cov_a) + np.trace(cov_b) - 2 * cross) / 50
    assert feature_stat_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_probe_accuracy_reads_separable_features_and_stays_near_chance_on_noise():
    from tunelab.advice.transferability import probe_accuracy

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    centres = rng.normal(size=(4, 50))
    separable = centres[labels] + 0.1 * rng.normal(size=(120, 50))
    assert probe_accuracy(separable, labels) == 1.0
    noise = rng.normal(size=(120, 50))
    assert 0.1 <= probe_accuracy(noise, labels) <= 0.45  # chance is 0.25; the best of 5 penalties is a little above
    assert probe_accuracy(noise, labels, seed=3) == probe_accuracy(noise, labels, seed=3)
    # a linear probe sees a direction nearest-centroid misses: one informative feature among many loud ones
    two = labels % 2
    loud = rng.normal(size=(120, 50)) * 10
    loud[:, 0] = two + 0.05 * rng.normal(size=120)
    assert probe_accuracy(loud, two) > 0.9 > nearest_centroid_accuracy(loud, two)


@pytest.mark.parametrize("examples, width", [(200, 30), (40, 120)])
def test_probe_accuracy_is_the_ridge_solution_solved_directly_per_fold(examples, width):
    """The eigendecomposition shortcut (either of X^T X or X X^T, whichever is smaller) scores what solving
    (X^T X + p n I) w = X^T T for every fold and penalty scores."""
    from tunelab.advice.transferability import PROBE_PENALTIES, _stratified_folds, probe_accuracy

    rng = np.random.default_rng(1)
    labels = np.arange(examples) % 3
    features = rng.normal(size=(examples, width)) + np.eye(3, width)[labels] * 0.8 + rng.normal(size=width) * 4
    fold_of = _stratified_folds(labels, 5, 0)
    correct = np.zeros(len(PROBE_PENALTIES))
    for k in range(5):
        train, test = fold_of != k, fold_of == k
        mean, scale = features[train].mean(0), features[train].std(0) + 1e-8
        x, x_test = (features[train] - mean) / scale, (features[test] - mean) / scale
        targets = np.eye(3)[labels[train]]
        offset = targets.mean(0)
        for j, penalty in enumerate(PROBE_PENALTIES):
            w = np.linalg.solve(x.T @ x + penalty * len(x) * np.eye(width), x.T @ (targets - offset))
            correct[j] += np.sum(np.argmax(x_test @ w + offset, axis=1) == labels[test])
    assert probe_accuracy(features, labels) == correct.max() / examples

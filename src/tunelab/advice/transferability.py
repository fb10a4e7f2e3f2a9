"""How well frozen features suit a labelled task, measured without training: LogME and two cheap companions.

All three are numpy-only functions of a feature matrix (one row per example) so they can be checked on
hand-made features and cost milliseconds next to the forward pass that produced the features.

- `logme`: the evidence of a Bayesian linear model on the features (You et al., ICML 2021). Higher means
  a linear head on these features explains the labels better, with model complexity already paid for.
- `nearest_centroid_accuracy`: cross-validated accuracy of the simplest classifier there is, in plain
  units (a fraction of examples) that a user can read without knowing LogME.
- `probe_accuracy`: cross-validated accuracy of a linear probe (ridge onto one-hot labels): what a trained
  head on these features reaches, the number the advisor compares across blocks and against a control.
- `feature_stat_distance`: how far apart two sets of features lie (e.g. train vs validation data).
"""

from __future__ import annotations

import math

import numpy as np

_MAX_ITERATIONS = 100
"""Fixed-point iterations at most; the paper reports convergence within a handful."""
_TOLERANCE = 1e-6
"""Stop when alpha and beta both change by less than this fraction in one iteration."""


def _spectrum(features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Squared singular values of F and what turns a target y into its squared projections on them.

    Returns (sigma2, left, right): with N > D the D x D matrix F^T F is decomposed (right = its
    eigenvectors V, and U^T y = S^-1 V^T F^T y), otherwise the N x N matrix F F^T (left = U). Whichever
    is smaller is decomposed, so the cost is min(N, D)^3 rather than N^3.
    """
    n, d = features.shape
    if n > d:
        sigma2, right = np.linalg.eigh(features.T @ features)
        return np.clip(sigma2, 0.0, None), None, right
    sigma2, left = np.linalg.eigh(features @ features.T)
    return np.clip(sigma2, 0.0, None), left, None


def _projections(features: np.ndarray, y: np.ndarray, sigma2: np.ndarray, left, right) -> tuple[np.ndarray, float]:
    """(z^2, r): z_i^2 = (u_i^T y)^2 per singular direction, r = |y|^2 - sum_i z_i^2, the part of y that no
    combination of features reaches. r is computed as a residual, not as that difference, which cancels
    catastrophically when y lies (almost) in the span of the features.
    """
    if left is not None:  # U is a full basis of R^N: nothing lies outside its span
        return (left.T @ y) ** 2, 0.0
    x = right.T @ (features.T @ y)  # sigma_i z_i
    positive = sigma2 > sigma2.max(initial=0.0) * 1e-12
    safe = np.where(positive, sigma2, 1.0)
    z2 = np.where(positive, x**2 / safe, 0.0)
    projection = features @ (right @ np.where(positive, x / safe, 0.0))
    return z2, float(np.sum((y - projection) ** 2))


def _evidence(sigma2: np.ndarray, z2: np.ndarray, outside: float, n: int, d: int) -> float:
    """Maximum over alpha, beta of log p(y | F, alpha, beta) for one target, by the paper's fixed point.

    Model: y = F w + e, w ~ N(0, alpha^-1 I_D), e ~ N(0, beta^-1 I_N). With F = U S V^T and z = U^T y,
    A = alpha I + beta F^T F has eigenvalues t_i = alpha + beta sigma_i^2 and the posterior mean is
    m = beta A^-1 F^T y, so

        |m|^2       = sum_i beta^2 sigma_i^2 z_i^2 / t_i^2
        |F m - y|^2 = r + sum_i (alpha / t_i)^2 z_i^2     (r: the part of |y|^2 outside the span of U)
        gamma       = sum_i beta sigma_i^2 / t_i          (effective number of well-determined weights)

    and the updates are alpha <- gamma / |m|^2, beta <- (N - gamma) / |F m - y|^2 (MacKay's evidence
    approximation, Algorithm 1 of the paper), from alpha = beta = 1. The evidence at the fixed point is

        N/2 log beta + D/2 log alpha - N/2 log 2 pi - beta/2 |F m - y|^2 - alpha/2 |m|^2 - 1/2 log |A|

    where log |A| = sum_i log t_i + (D - k) log alpha over the k = min(N, D) computed eigenvalues.
    alpha and beta are kept in [1e-12, 1e12]: the bound is reached only when the supremum lies at
    infinity (labels fitted exactly), where the evidence has already levelled off.
    """
    k = len(sigma2)
    alpha, beta = 1.0, 1.0
    tiny = 1e-300

    def terms(alpha: float, beta: float) -> tuple[np.ndarray, float, float]:
        t = alpha + beta * sigma2
        m2 = float(np.sum(beta**2 * sigma2 * z2 / t**2))
        residual = max(outside + float(np.sum((alpha / t) ** 2 * z2)), tiny)
        return t, m2, residual

    for _ in range(_MAX_ITERATIONS):
        t, m2, residual = terms(alpha, beta)
        gamma = float(np.sum(beta * sigma2 / t))
        new_alpha = min(max(gamma / max(m2, tiny), 1e-12), 1e12) if gamma > 0 else alpha
        new_beta = min(max((n - gamma) / residual, 1e-12), 1e12)
        done = abs(new_alpha - alpha) <= _TOLERANCE * alpha and abs(new_beta - beta) <= _TOLERANCE * beta
        alpha, beta = new_alpha, new_beta
        if done:
            break
    t, m2, residual = terms(alpha, beta)
    log_det = float(np.sum(np.log(t))) + (d - k) * math.log(alpha)
    return (
        n / 2 * math.log(beta)
        + d / 2 * math.log(alpha)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * residual
        - alpha / 2 * m2
        - log_det / 2
    )


def logme(features: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """LogME (You, Liu, Wang, Long: "LogME: Practical Assessment of Pre-trained Models for Transfer
    Learning", ICML 2021): the maximum log evidence of a Bayesian linear regression from the features to
    each class's one-vs-rest indicator y_c in {0, 1}, averaged over classes and divided by N.

    Why evidence rather than a fitted classifier's accuracy: the marginal likelihood integrates the
    weights out, so it rewards features that explain the labels *and* penalises the capacity used to do
    it, without a validation split or a regularisation grid. The prior precision alpha and noise
    precision beta are set by the paper's fixed-point iteration (see `_evidence`), on one eigen-
    decomposition of F^T F (when N > D) or F F^T (otherwise) shared by all classes.

    Features are not centred (the paper's model has no bias term). The score is invariant to scaling the
    features, so models with differently scaled features can be compared; they are rescaled to unit RMS
    first, which leaves the score unchanged but makes the paper's starting point alpha = beta = 1 a
    sensible one at any scale (from far off, the iteration can stall at a bound). Repeated
    (features, label) rows count once, N included. Classes absent from `labels` are skipped (their
    indicator is constant zero and has no finite evidence maximum). Units: nats per example; typical
    values lie between about -1 and 2.
    """
    f = np.asarray(features, dtype=np.float64)
    y_all = np.asarray(labels).astype(np.int64).ravel()
    if f.ndim != 2 or f.shape[0] != y_all.shape[0]:
        raise ValueError(f"features must be (N, D) with N = len(labels); got {f.shape} and {y_all.shape[0]} labels")
    # Exact duplicates (same features, same label) are counted once: with fewer distinct rows than
    # dimensions, a repeated row lets the noise variance shrink to zero and the evidence grow without bound.
    rows = np.unique(np.column_stack([f, y_all]), axis=0)
    f, y_all = rows[:, :-1], rows[:, -1].astype(np.int64)
    n, d = f.shape
    f = f / max(float(np.sqrt(np.mean(f**2))), 1e-300)  # unit RMS: see the docstring
    sigma2, left, right = _spectrum(f)
    scores = []
    for c in range(num_classes):
        y = (y_all == c).astype(np.float64)
        if not y.any():
            continue
        z2, outside = _projections(f, y, sigma2, left, right)
        scores.append(_evidence(sigma2, z2, outside, n, d))
    if not scores:
        raise ValueError(f"no label in 0..{num_classes - 1}")
    return float(np.mean(scores) / n)


def _stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold number per example: each class shuffled, then dealt round-robin so folds stay balanced."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    position = 0
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        fold_of[members] = (position + np.arange(len(members))) % folds
        position += len(members)
    return fold_of


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nearest_centroid_accuracy(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of a nearest-class-centroid classifier under cosine similarity.

    Per fold: features are centred on the training folds' mean and L2-normalised (so a shared offset,
    which dominates raw CNN and transformer features, does not hide the class structure), centroids are
    the class means of the training folds, and each held-out example takes the class of the most similar
    centroid. Needs no fitting, so it reads as "how separable are the classes as they stand", a number in
    accuracy units to set next to LogME. Stratified folds; `folds` is capped at N.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64).ravel()
    folds = max(2, min(folds, len(y)))
    fold_of = _stratified_folds(y, folds, seed)
    correct = 0
    for k in range(folds):
        test, train = fold_of == k, fold_of != k
        if not test.any():
            continue
        mean = f[train].mean(axis=0)
        train_x, test_x = _unit(f[train] - mean), _unit(f[test] - mean)
        classes = np.unique(y[train])
        centroids = _unit(np.stack([train_x[y[train] == c].mean(axis=0) for c in classes]))
        predicted = classes[np.argmax(test_x @ centroids.T, axis=1)]
        correct += int(np.sum(predicted == y[test]))
    return correct / len(y)


PROBE_PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
"""Ridge penalties the probe tries, per example and relative to the mean feature variance (1 = standardised)."""


def probe_accuracy(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of a linear probe: ridge regression onto one-hot labels, argmax to predict.

    Closed form from one eigendecomposition per fold, of the smaller of X^T X and X X^T (`_spectrum`, as for
    LogME), which serves every penalty: a probe after each block costs little next to the forward pass (the
    same reason surgical fine-tuning measures per-block probes before choosing which blocks to tune, Lee et
    al. ICLR 2023). It gives what one SVD of X per fold gave, 3.5-7x faster (`tests/test_transferability.py`
    checks it against a direct solve). Per fold the features are standardised on the training folds; the best of
    `PROBE_PENALTIES`, chosen on the held-out folds themselves, is reported: optimistic by the same small
    amount for every block and model, so differences between them (what the advisor reads) stay fair.
    Stratified folds; `folds` is capped at the smallest class size (at least 2).
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64).ravel()
    classes, y = np.unique(y, return_inverse=True)
    folds = max(2, min(folds, int(np.bincount(y).min())))
    fold_of = _stratified_folds(y, folds, seed)
    correct = np.zeros(len(PROBE_PENALTIES))
    for k in range(folds):
        test, train = fold_of == k, fold_of != k
        if not test.any():
            continue
        mean, scale = f[train].mean(axis=0), f[train].std(axis=0) + 1e-8
        x, x_test = (f[train] - mean) / scale, (f[test] - mean) / scale
        targets = np.eye(len(classes))[y[train]]
        offset = targets.mean(axis=0)
        sigma2, left, right = _spectrum(x)
        if right is not None:  # more examples than features: w = V (S^2 + pI)^-1 V^T X^T T
            coefficients, basis = right.T @ (x.T @ (targets - offset)), x_test @ right
        else:  # fewer: the same ridge solution in its kernel form, w = X^T U (S^2 + pI)^-1 U^T T
            coefficients, basis = left.T @ (targets - offset), x_test @ (x.T @ left)
        for j, penalty in enumerate(PROBE_PENALTIES):
            scores = basis @ (coefficients / (sigma2 + penalty * len(x))[:, None]) + offset
            correct[j] += np.sum(np.argmax(scores, axis=1) == y[test])
    return float(correct.max() / len(y))


def _sqrt_trace(a: np.ndarray, b: np.ndarray) -> float:
    """tr((S_a^1/2 S_b S_a^1/2)^1/2) for the covariances of centred rows a, b, in the cheaper space.

    Its square roots are those of the eigenvalues of S_a S_b. With fewer rows than dimensions these are
    the squared singular values of A B^T (A = a / sqrt(n_a - 1), likewise B), an n_a x n_b matrix, so no
    D x D matrix is formed; otherwise they come from the D x D covariances.
    """
    a, b = a / math.sqrt(len(a) - 1), b / math.sqrt(len(b) - 1)
    if a.shape[1] > min(len(a), len(b)):
        return float(np.sum(np.linalg.svd(a @ b.T, compute_uv=False)))
    values, vectors = np.linalg.eigh(a.T @ a)
    root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    return float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root @ (b.T @ b) @ root), 0.0, None))))


def feature_stat_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Squared Fréchet distance between Gaussians fitted to two feature sets, divided by the dimension D.

        d^2 = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)

    the statistic behind FID (Heusel et al., NeurIPS 2017), here per feature dimension so that numbers
    from layers of different width are on a similar footing. A cheap shift proxy: it sees only means and
    covariances, is in squared feature units (compare it across sets from the same extractor, e.g.
    against two halves of one set), and is 0 for identical statistics. Needs >= 2 rows in each set.
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"need two (N, D) feature sets with the same D and N >= 2; got {a.shape} and {b.shape}")
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    a, b = a - mean_a, b - mean_b
    trace_a, trace_b = float(np.sum(a**2)) / (len(a) - 1), float(np.sum(b**2)) / (len(b) - 1)
    distance = float(np.sum((mean_a - mean_b) ** 2)) + trace_a + trace_b - 2 * _sqrt_trace(a, b)
    return max(distance, 0.0) / a.shape[1]

"""Recommend a transfer strategy from the data's size and its measured similarity to the model's source.

The classic decision guide crosses two questions (CS231n "Transfer Learning" notes; Yosinski et al. 2014):

|               | similar to the source           | dissimilar                                   |
|---------------|---------------------------------|----------------------------------------------|
| small data    | `none`: linear head on features | `retrain:K`: keep the blocks that transfer   |
| large data    | `full` (`adapter` on a budget)  | `full`; `scratch` if pretraining buys nothing |

"Similar" is measured, not guessed: LogME (You et al. 2021) of the pretrained model's features against a
control, the same architecture with random weights, on the user's own examples. The gap is what
pretraining contributes. LogME of every block's features (one forward pass) locates K: the block after
which features stop transferring. The cost is one forward pass per model over at most `max_examples`
examples, about one epoch of fine-tuning (MobileNetV2 on 398 hymenoptera images: 113 s, against 707 s
for a 5-epoch `full` run on the same busy CPU). `decide` is the rule alone, a pure function of the
measured numbers, so it is tested without models and can be re-run with other thresholds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from tunelab.data.examples import Examples
from tunelab.advise.profile import DataProfile, profile, stratified_sample
from tunelab.errors import TunelabError
from tunelab.runs.features import extract_many
from tunelab.runs.loaders import TASKS, check_modality, infer_task, load_splits
from tunelab.runs.prepare import prepare
from tunelab.advise.transferability import feature_stat_distance, logme, nearest_centroid_accuracy
from tunelab.models.zoo import load_backbone

NOISE_FLOOR = 0.01
"""Smallest LogME difference (nats/example) treated as more than noise, however steady the halves agree."""
FALLBACKS = ("adapter", "lora", "none")
"""Cheaper strategies tried in this order when the preferred one exceeds a budget."""


@dataclass(frozen=True)
class Thresholds:
    """Where the decision guide's boundaries lie; every value can be overridden.

    Chosen from first principles and the literature, then sanity-checked (not fitted) on real data:
    - `small_per_class=100`: the guide says "small" without a number, so this is a round prior, not a
      measured constant. Below it, `full` fits millions of weights to a few hundred or thousand labels
      (the overfitting the guide warns about), while a head on frozen features fits D x C weights;
      VTAB-1k (Zhai et al. 2019) likewise calls 1000 examples per task its low-data regime.
    - LogME is a per-example log evidence in nats. For one-vs-rest targets it is, up to a complexity
      penalty, 0.5 log(1 / residual variance), so a LogME difference d means the better features leave
      exp(-2d) of the other's residual variance. `similar_logme_gain=0.05` asks pretrained features to
      leave at most ~90% of the residual variance that random features of the same architecture leave
      (random convolutional features are far from useless, so the bar is relative to them). It is set
      low because the gain shrinks on small samples, where the penalty (growing with D / N) pulls both
      scores toward the no-information level. Measured here: MiniLM-L6 on SST-2 (features clearly useful,
      nearest-centroid 74-77% vs 55% for random weights) gains 0.058 on 300 examples and 0.111 on 600;
      MobileNetV2 on hymenoptera (an ImageNet subset) 0.74 on 398; MobileNetV2 on synthetic colour blobs
      (where random features do better) -0.97.
    - `transfer_drop=0.05` (~10% more residual variance, as large as the similarity bar) marks the fall
      in the per-block curve after its peak that says later blocks are specialised to the source task,
      the effect Yosinski et al. 2014 ("How transferable are features in deep neural networks?")
      measured growing with depth and with the distance between tasks; smaller wiggles are a plateau.
      (MiniLM-L6 on SST-2: its last layer falls 0.065-0.08 below layer 4.)
    """

    small_per_class: int = 100
    """Median examples per class below which the data counts as small."""
    similar_logme_gain: float = 0.05
    """LogME of pretrained minus random-init features (nats/example) at or above which data counts as similar."""
    transfer_drop: float = 0.05
    """Fall of the per-block LogME below its peak (nats/example) that says features stop transferring."""

    def __post_init__(self) -> None:
        if self.small_per_class < 1:
            raise TunelabError(f"small_per_class must be at least 1, got {self.small_per_class}")
        if self.transfer_drop < 0:
            raise TunelabError(f"transfer_drop must be >= 0, got {self.transfer_drop}")


@dataclass(frozen=True)
class Budget:
    """Limits on what the recommended strategy may train; None means no limit."""

    params: int | None = None
    """Most trainable parameters allowed."""
    memory_mb: float | None = None
    """Most training memory in MB for weights, gradients and AdamW moments (activations not counted)."""


@dataclass(frozen=True)
class Evidence:
    """The measured numbers the rule decides on."""

    sample_size: int
    """Examples the pretrained features were computed on (a stratified sample): the per-block curve."""
    control_size: int
    """Examples of that sample the random-init control also ran on: every pretrained-vs-control number."""
    block_names: list[str]
    """Name of each block, input first."""
    logme_pretrained: float
    """LogME of the pretrained model's last-block features (on the control's examples)."""
    logme_control: float
    """LogME of the same architecture's last-block features with random weights."""
    logme_gain_noise: float
    """Standard error of the gain, estimated from two stratified halves of the sample."""
    logme_per_block: list[float]
    """LogME of the pretrained features after each block."""
    nearest_centroid_pretrained: float
    """Cross-validated nearest-centroid accuracy on the pretrained last-block features."""
    nearest_centroid_control: float
    """The same on the random-init control's features."""
    chance_accuracy: float
    """Accuracy of always predicting the largest class in the sample."""
    trainable_params: dict[str, int] = field(default_factory=dict)
    """Trainable parameters of each candidate strategy spec."""
    memory_mb: dict[str, float] = field(default_factory=dict)
    """Training memory estimate per candidate: fp32 weights + gradients + AdamW moments, no activations."""
    train_val_shift: float | None = None
    """Fréchet distance per dimension between train and val features (only with separate val data)."""
    train_halves_shift: float | None = None
    """The same between two random halves of the train features: the no-shift baseline."""


@dataclass(frozen=True)
class Advice:
    """A recommended strategy, a runner-up, why, and the numbers behind it."""

    recommendation: str
    """Strategy spec to use, e.g. 'none', 'retrain:4', 'full', 'adapter'."""
    runner_up: str
    """The next strategy worth trying (e.g. in `tunelab compare`)."""
    reasons: list[str]
    """Plain-language sentences quoting the measured numbers."""
    evidence: dict
    """Data profile, measurements, candidate sizes and seconds taken (JSON-ready)."""

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        e = self.evidence
        lines = [f"recommendation: {self.recommendation}    runner-up: {self.runner_up}"]
        lines += [f"  - {r}" for r in self.reasons]
        if "seconds" in e:
            lines.append(f"measured {e.get('model', 'the model')} on {e['sample_size']:,} of {e['n']:,} examples "
                         f"in {e['seconds']:.1f} s")
        return "\n".join(lines)


def transfer_depth(per_block: list[float], drop: float) -> tuple[int, int, int | None]:
    """(K, peak, fall): freeze K blocks, where features stop transferring.

    `peak` is the block whose features score highest; `fall` the first block after it scoring more than
    `drop` below the peak (None if none does). Blocks before `fall` transfer, so K = fall, or all blocks
    when nothing falls; K is clipped to 1 .. n-1 so that something is frozen and something trains.
    Dips before the peak are ignored: early blocks are narrow, and later blocks recovered anyway.
    """
    n = len(per_block)
    peak = int(np.argmax(per_block))
    fall = next((j for j in range(peak + 1, n) if per_block[j] < per_block[peak] - drop), None)
    k = n if fall is None else fall
    return min(max(k, 1), max(n - 1, 1)), peak, fall


def decide(
    profile: DataProfile, evidence: Evidence, thresholds: Thresholds, budgets: Budget
) -> tuple[str, str, list[str]]:
    """The decision guide on measured numbers: (recommendation, runner-up, reasons)."""
    t, e = thresholds, evidence
    small = profile.per_class_median < t.small_per_class
    gain = e.logme_pretrained - e.logme_control
    similar = gain >= t.similar_logme_gain
    within_noise = gain <= max(2 * e.logme_gain_noise, NOISE_FLOOR)
    k, peak, fall = transfer_depth(e.logme_per_block, t.transfer_drop)
    retrain = f"retrain:{k}" if len(e.logme_per_block) > 1 else "full"
    reasons = [
        f"{'Small' if small else 'Large'} data: a median of {profile.per_class_median:g} examples per class "
        f"({profile.n:,} examples, {profile.classes} classes), {'below' if small else 'at or above'} the "
        f"{t.small_per_class} per class that separate small from large data.",
        f"{'Similar' if similar else 'Dissimilar'} to the model's source: LogME of the pretrained features is "
        f"{e.logme_pretrained:.3f} against {e.logme_control:.3f} for the same architecture with random weights "
        f"(gain {gain:+.3f} ± {e.logme_gain_noise:.3f}; {t.similar_logme_gain:g} or more counts as similar); "
        f"nearest-centroid accuracy {e.nearest_centroid_pretrained:.0%} vs {e.nearest_centroid_control:.0%} "
        f"(largest class {e.chance_accuracy:.0%}).",
    ]
    if small and similar:
        rec, runner = "none", "adapter"
        reasons.append("A new head on the frozen features (none) fits little data without overfitting the backbone, "
                       "and the features already suit the task.")
    elif small:
        rec, runner = retrain, "adapter"
        reasons.append(_depth_reason(e, peak, fall, t.transfer_drop) + f" {rec} freezes the blocks that transfer "
                       "and retrains only the rest, few enough parameters for small data.")
    elif similar:
        rec, runner = "full", "none"
        reasons.append("With this much data, fine-tuning everything (full) adapts the pretrained features further "
                       "at little risk of overfitting; a head on the frozen features (none) is the cheap runner-up "
                       "that may come close.")
    else:
        rec, runner = "full", "scratch" if within_noise else retrain
        reasons.append("With this much data and a different domain, fine-tuning everything (full) lets every "
                       "layer adapt.")
        if within_noise:
            reasons.append(f"The random-init control scores within noise of the pretrained model (gain {gain:+.3f}), "
                           "so training from scratch (scratch) may do as well.")
    rec, runner = _apply_budget(rec, runner, e, budgets, reasons)
    if profile.imbalance >= 10:
        reasons.append(f"Classes are imbalanced ({profile.per_class_max}:{profile.per_class_min} between the largest "
                       "and smallest); judge results by macro-F1, not accuracy.")
    if e.train_val_shift is not None and e.train_halves_shift and e.train_val_shift > 3 * e.train_halves_shift:
        ratio = e.train_val_shift / e.train_halves_shift
        reasons.append(f"Validation features differ from training features {ratio:.1f}x more than two halves of the "
                       "training data do: expect validation scores below training ones.")
    return rec, runner, reasons


def _depth_reason(e: Evidence, peak: int, fall: int | None, drop: float) -> str:
    scores, names = e.logme_per_block, e.block_names
    text = f"Per-block LogME peaks at block {peak} ({names[peak]}, {scores[peak]:.3f})"
    if fall is None:
        return text + f" and does not fall more than {drop:g} below it afterwards."
    return text + f" and falls to {scores[fall]:.3f} at block {fall} ({names[fall]}): features stop transferring there."


def _apply_budget(rec: str, runner: str, e: Evidence, budgets: Budget, reasons: list[str]) -> tuple[str, str]:
    """Swap a preferred strategy over budget for the first cheaper one that fits, and say so."""

    def fits(spec: str) -> bool:
        params, memory = e.trainable_params.get(spec), e.memory_mb.get(spec)
        return (budgets.params is None or params is None or params <= budgets.params) and (
            budgets.memory_mb is None or memory is None or memory <= budgets.memory_mb)

    def size(spec: str) -> str:
        params, memory = e.trainable_params.get(spec), e.memory_mb.get(spec)
        parts = [] if params is None else [f"{params:,} parameters"]
        parts += [] if memory is None else [f"~{memory:,.0f} MB" if memory >= 10 else f"~{memory:.1f} MB"]
        return " / ".join(parts) or "an unknown amount"

    limits = " / ".join(([] if budgets.params is None else [f"{budgets.params:,} parameters"])
                        + ([] if budgets.memory_mb is None else [f"{budgets.memory_mb:,.0f} MB"]))
    if not fits(rec):
        options = [s for s in FALLBACKS if s != rec and fits(s)]
        cheapest = min(e.trainable_params, key=e.trainable_params.get, default="none")
        new = options[0] if options else cheapest
        reasons.append(f"{rec} trains {size(rec)}, over the budget of {limits}; {new} trains {size(new)}"
                       + ("." if options else ", the least of all candidates (nothing fits)."))
        runner, rec = rec, new
    if runner == rec or not fits(runner):
        runner = next((s for s in FALLBACKS if s != rec and fits(s)), runner if runner != rec else "none")
    return rec, runner


def _halves(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    first = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        first[members[::2]] = True
    return first, ~first


def _check_data(pool: Examples) -> None:
    if len(pool.classes) < 2:
        found = f"{len(pool.classes)} class ({', '.join(pool.classes)})"
        raise TunelabError(f"{pool.source}: found {found}; advice needs at least 2 classes")
    counts = np.bincount(np.asarray(pool.labels, dtype=np.int64), minlength=len(pool.classes))
    for name, count in zip(pool.classes, counts):
        if count < 2:
            raise TunelabError(f"{pool.source}: class '{name}' has {count} example(s); advice needs 2 or more")


def _measure(model: str, task: str, sample: Examples, args: dict, seed: int):
    """Pretrained features at every block on the sample, and the random-init control's last block on a part.

    The control can run on a stratified `control_examples` part of the sample only (None: all of it),
    to save time; that part is read once for both models. Returns (per-block features in sample order,
    the part's indices, the control's features there, block names, seconds).
    """
    pretrained = load_backbone(model, pretrained=True)
    check_modality(task, pretrained)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        control = load_backbone(model, pretrained=False)
    blocks = list(range(len(pretrained.blocks)))
    both = stratified_sample(sample.labels, args["control_examples"] or len(sample), seed)
    rest = sorted(set(range(len(sample))) - set(both))
    started = time.perf_counter()
    loader_args = (args["batch_size"], args["max_length"], args["progress"])
    shared, controlled = extract_many([(pretrained, blocks), (control, None)], sample.subset(both), *loader_args)
    if rest:
        more = extract_many([(pretrained, blocks)], sample.subset(rest), *loader_args)[0]
        order = np.argsort(both + rest)
        per_block = [np.concatenate([shared[i], more[i]])[order] for i in blocks]
    else:
        per_block = [shared[i] for i in blocks]
    seconds = time.perf_counter() - started
    return per_block, both, controlled[blocks[-1]], list(pretrained.block_names), seconds


def _candidates(model: str, k: int, num_classes: int) -> tuple[dict[str, int], dict[str, float]]:
    """Trainable parameters and training memory (fp32 weights + grads + AdamW moments) of each candidate."""
    params, memory = {}, {}
    for spec in ("none", "full", f"retrain:{k}", "adapter", "lora", "scratch"):
        try:
            plan = prepare(model, spec, num_classes)
        except TunelabError:  # e.g. lora on a model with nothing to target: not a candidate
            continue
        params[spec] = plan.trainable_params
        memory[spec] = round(4 * (plan.total_params + 3 * plan.trainable_params) / 2**20, 1)
    return params, memory


def advise(
    model: str,
    data: str,
    val_data: str | None = None,
    task: str = "auto",
    max_examples: int = 1000,
    budget_params: int | None = None,
    budget_memory_mb: float | None = None,
    thresholds: Thresholds = Thresholds(),
    seed: int = 0,
    *,
    control_examples: int | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    text_column: str | None = None,
    label_column: str = "label",
    progress: bool = True,
) -> Advice:
    """Measure `model` on `data` and recommend a strategy (the rule is in the module docstring and `decide`).

    The profile counts the data to be trained on (with `val_data`, the training data only); features
    are computed on train and validation pooled: the pretrained model's on a stratified sample of at most `max_examples`, the random-init control's on the same
    sample, or on a stratified `control_examples` of it to save time (a smaller sample shrinks the
    LogME gain, see `Thresholds`). Cost: one pretrained and one control forward pass over the sample.
    """
    started = time.perf_counter()
    if budget_params is not None and budget_params < 1:
        raise TunelabError(f"budget_params must be a positive number of parameters, got {budget_params}")
    if budget_memory_mb is not None and budget_memory_mb <= 0:
        raise TunelabError(f"budget_memory_mb must be a positive number of MB, got {budget_memory_mb}")
    task = infer_task(data, task)
    if task not in TASKS:
        raise TunelabError(f"advise does not support task '{task}'; valid: {', '.join(TASKS)}")
    splits = load_splits(task, data, val_data, 0.2, seed, text_column, label_column)
    train, val = splits.train, splits.val
    pool = Examples(train.inputs + val.inputs, train.labels + val.labels, train.classes, train.source)
    _check_data(pool)
    num_classes = len(pool.classes)
    for name, value in (("max_examples", max_examples), ("control_examples", control_examples)):
        if value is not None and value < 4 * num_classes:
            raise TunelabError(f"{name}={value} is too few for {num_classes} classes; use {4 * num_classes} or more")
    # Small or large is about what the strategy will be fitted on: with separate val data, the training
    # data alone (the validation set only measures); without, all of it (the user's own split comes later).
    data_profile = profile(train if val_data is not None else pool, seed=seed)
    index = stratified_sample(pool.labels, max_examples, seed)
    sample = pool.subset(index)
    labels = np.asarray(sample.labels)
    args = dict(control_examples=control_examples, batch_size=batch_size, max_length=max_length, progress=progress)
    per_block, both, control, block_names, feature_seconds = _measure(model, task, sample, args, seed)

    pretrained, common = per_block[-1][both], labels[both]
    halves = _halves(common, seed)
    gains = [logme(pretrained[h], common[h], num_classes) - logme(control[h], common[h], num_classes) for h in halves]
    shift = halves_shift = None
    from_val = np.asarray(index) >= len(train)
    if val_data is not None and from_val.sum() >= 2 and (~from_val).sum() >= 4:
        train_rows = per_block[-1][~from_val]
        a, b = _halves(labels[~from_val], seed)
        shift = feature_stat_distance(train_rows, per_block[-1][from_val])
        halves_shift = feature_stat_distance(train_rows[a], train_rows[b])
    block_scores = [logme(f, labels, num_classes) for f in per_block]
    params, memory = _candidates(model, transfer_depth(block_scores, thresholds.transfer_drop)[0], num_classes)
    evidence = Evidence(
        sample_size=len(sample),
        control_size=len(both),
        block_names=block_names,
        logme_pretrained=logme(pretrained, common, num_classes),
        logme_control=logme(control, common, num_classes),
        logme_gain_noise=abs(gains[0] - gains[1]) / 2,
        logme_per_block=block_scores,
        nearest_centroid_pretrained=nearest_centroid_accuracy(pretrained, common, seed=seed),
        nearest_centroid_control=nearest_centroid_accuracy(control, common, seed=seed),
        chance_accuracy=float(np.bincount(common).max() / len(common)),
        trainable_params=params,
        memory_mb=memory,
        train_val_shift=shift,
        train_halves_shift=halves_shift,
    )
    budget = Budget(budget_params, budget_memory_mb)
    recommendation, runner_up, reasons = decide(data_profile, evidence, thresholds, budget)
    record = {
        "model": model, "data": str(data), "task": task, **asdict(data_profile), **asdict(evidence),
        "thresholds": asdict(thresholds), "budget": asdict(budget),
        "seconds_features": round(feature_seconds, 3), "seconds": round(time.perf_counter() - started, 3),
    }
    return Advice(recommendation, runner_up, reasons, record)

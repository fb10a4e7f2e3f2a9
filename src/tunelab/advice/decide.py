"""Recommend a transfer strategy from the data's size and its measured similarity to the model's source.

The classic decision guide crosses two questions (CS231n "Transfer Learning" notes; Yosinski et al. 2014):

|               | similar to the source           | dissimilar                                   |
|---------------|---------------------------------|----------------------------------------------|
| small data    | `none`: linear head on features | `retrain:K`: keep the blocks that transfer   |
| large data    | `full` (`adapter` on a budget)  | `full`; `scratch` if pretraining buys nothing |

"Similar" is measured, not guessed: LogME (You et al. 2021) of the pretrained model's features against a
control, the same architecture with random weights, on the user's own examples. The gap is what
pretraining contributes. LogME of every block's features locates K: the block after which features stop
transferring. `tunelab.advice.measure` takes those measurements; this module is the rule alone, a pure
function of the measured numbers (no model, no data, no I/O, no torch), so it is tested on hand-made
`Measurements` and can be re-run with other thresholds or budgets.

The strategy keys in the table are the guide's vocabulary. The cheaper strategies a budget falls back to
are not listed here: `measure` finds them among the registered strategies (`Measurements.parameter_efficient`).

May import: tunelab.advice.profile (the DataProfile type), tunelab.settings, tunelab.errors, numpy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from tunelab.advice.profile import DataProfile
from tunelab.errors import TunelabError
from tunelab.settings import ThresholdSettings, validate

NOISE_FLOOR = 0.01
"""Smallest LogME difference (nats/example) treated as more than noise, however steady the halves agree."""
LAST_RESORT = "none"
"""Tried after the parameter-efficient strategies when the preferred one exceeds a budget: a head only."""


@dataclass(frozen=True, kw_only=True)
class Thresholds(ThresholdSettings):
    """Where the decision guide's boundaries lie; every value can be overridden.

    The fields, their defaults and their limits are `tunelab.settings.ThresholdSettings` (defined once,
    shared with `tunelab advise`'s flags); the limits are checked here too, for library callers.
    The defaults were chosen from first principles and the literature, then sanity-checked (not fitted)
    on real data:
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

    def __post_init__(self) -> None:
        validate(ThresholdSettings, asdict(self), "thresholds")


@dataclass(frozen=True)
class Budget:
    """Limits on what the recommended strategy may train; None means no limit."""

    params: int | None = None
    """Most trainable parameters allowed."""
    memory_mb: float | None = None
    """Most training memory in MB for weights, gradients and AdamW moments (activations not counted)."""

    def __post_init__(self) -> None:
        if self.params is not None and self.params < 1:
            raise TunelabError(f"budget_params must be a positive number of parameters, got {self.params}")
        if self.memory_mb is not None and self.memory_mb <= 0:
            raise TunelabError(f"budget_memory_mb must be a positive number of MB, got {self.memory_mb}")


@dataclass(frozen=True)
class Evidence:
    """The measured numbers the rule decides on (reported as they are in the advice's JSON)."""

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
    pool_size: int = 0
    """Examples the sample was drawn from: the training data, plus the validation data when it was given
    separately (the profile's `n` counts the training data alone then); 0 = not recorded."""


@dataclass(frozen=True)
class Measurements:
    """Everything `tunelab.advice.measure` found out: the input of `decide`."""

    model: str
    """The model as the user named it."""
    data: str
    """The training data path."""
    task: str
    """The task the data was read as (a single-label task)."""
    profile: DataProfile
    """Class counts and input sizes of the data the strategy will be trained on."""
    evidence: Evidence
    """LogME, nearest-centroid accuracies, candidate sizes and the feature shift."""
    parameter_efficient: tuple[str, ...] = ()
    """Candidate specs that train only modules they insert (and the head), in registry order: the budget fallbacks."""
    seconds_features: float = 0.0
    """Seconds spent computing features (both models)."""
    seconds: float = 0.0
    """Seconds the whole measurement took, data reading and candidate sizing included."""


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
        if e.get("logme_per_block"):
            lines.append(_per_block_line(e["block_names"], e["logme_per_block"]))
        if "seconds" in e:
            pool = e.get("pool_size") or e["n"]
            of = "all" if e["sample_size"] >= pool else f"{e['sample_size']:,} of"
            extra = f" ({e['n']:,} training + {pool - e['n']:,} validation)" if pool > e["n"] else ""
            lines.append(
                f"measured {e.get('model', 'the model')} on {of} {pool:,} examples{extra} in {e['seconds']:.1f} s"
            )
        return "\n".join(lines)


def _per_block_line(names: list[str], scores: list[float]) -> str:
    """The per-block evidence in one line: LogME of the features after each block, the peak marked."""
    peak = int(np.argmax(scores))
    cells = [f"{n} {v:.3f}{' (peak)' if i == peak else ''}" for i, (n, v) in enumerate(zip(names, scores))]
    return "  per-block LogME of the pretrained features: " + ", ".join(cells)


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


def decide(measurements: Measurements, thresholds: Thresholds = Thresholds(), budget: Budget = Budget()) -> Advice:
    """The decision guide on measured numbers: the recommendation, the runner-up, the reasons and the record."""
    recommendation, runner_up, reasons = _rule(measurements, thresholds, budget)
    m = measurements
    record = {
        "model": m.model,
        "data": m.data,
        "task": m.task,
        **asdict(m.profile),
        **asdict(m.evidence),
        "thresholds": asdict(thresholds),
        "budget": asdict(budget),
        "seconds_features": round(m.seconds_features, 3),
        "seconds": round(m.seconds, 3),
    }
    return Advice(recommendation, runner_up, reasons, record)


def _rule(m: Measurements, t: Thresholds, budget: Budget) -> tuple[str, str, list[str]]:
    """(recommendation, runner-up, reasons): the table in the module docstring, then budget and caveats."""
    profile, e = m.profile, m.evidence
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
        reasons.append(
            "A new head on the frozen features (none) fits little data without overfitting the backbone, "
            "and the features already suit the task."
        )
    elif small:
        rec, runner = retrain, "adapter"
        reasons.append(
            _depth_reason(e, peak, fall, t.transfer_drop) + f" {rec} freezes the blocks that transfer "
            "and retrains only the rest, few enough parameters for small data."
        )
    elif similar:
        rec, runner = "full", "none"
        reasons.append(
            "With this much data, fine-tuning everything (full) adapts the pretrained features further "
            "at little risk of overfitting; a head on the frozen features (none) is the cheap runner-up "
            "that may come close."
        )
    else:
        rec, runner = "full", "scratch" if within_noise else retrain
        reasons.append(
            "With this much data and a different domain, fine-tuning everything (full) lets every layer adapt."
        )
        if within_noise:
            reasons.append(
                f"The random-init control scores within noise of the pretrained model (gain {gain:+.3f}), "
                "so training from scratch (scratch) may do as well."
            )
    fallbacks = (*m.parameter_efficient, LAST_RESORT)
    rec, runner = _apply_budget(rec, runner, e, budget, fallbacks, reasons)
    if profile.imbalance >= 10:
        reasons.append(
            f"Classes are imbalanced ({profile.per_class_max}:{profile.per_class_min} between the largest "
            "and smallest); judge results by macro-F1, not accuracy."
        )
    if e.train_val_shift is not None and e.train_halves_shift and e.train_val_shift > 3 * e.train_halves_shift:
        ratio = e.train_val_shift / e.train_halves_shift
        reasons.append(
            f"Validation features differ from training features {ratio:.1f}x more than two halves of the "
            "training data do: expect validation scores below training ones."
        )
    return rec, runner, reasons


def _depth_reason(e: Evidence, peak: int, fall: int | None, drop: float) -> str:
    scores, names = e.logme_per_block, e.block_names
    text = f"Per-block LogME peaks at block {peak} ({names[peak]}, {scores[peak]:.3f})"
    if fall is None:
        return text + f" and does not fall more than {drop:g} below it afterwards."
    return text + f" and falls to {scores[fall]:.3f} at block {fall} ({names[fall]}): features stop transferring there."


def _apply_budget(
    rec: str, runner: str, e: Evidence, budget: Budget, fallbacks: tuple[str, ...], reasons: list[str]
) -> tuple[str, str]:
    """Swap a preferred strategy over budget for the first of `fallbacks` that fits, and say so.

    A candidate whose size was not measured counts as fitting: the rule has nothing to hold against it.
    """

    def fits(spec: str) -> bool:
        params, memory = e.trainable_params.get(spec), e.memory_mb.get(spec)
        return (budget.params is None or params is None or params <= budget.params) and (
            budget.memory_mb is None or memory is None or memory <= budget.memory_mb
        )

    def size(spec: str) -> str:
        params, memory = e.trainable_params.get(spec), e.memory_mb.get(spec)
        parts = [] if params is None else [f"{params:,} parameters"]
        parts += [] if memory is None else [f"~{memory:,.0f} MB" if memory >= 10 else f"~{memory:.1f} MB"]
        return " / ".join(parts) or "an unknown amount"

    limits = " / ".join(
        ([] if budget.params is None else [f"{budget.params:,} parameters"])
        + ([] if budget.memory_mb is None else [f"{budget.memory_mb:,.0f} MB"])
    )
    if not fits(rec):
        options = [s for s in fallbacks if s != rec and fits(s)]
        cheapest = min(e.trainable_params, key=e.trainable_params.get, default=LAST_RESORT)
        new = options[0] if options else cheapest
        reasons.append(
            f"{rec} trains {size(rec)}, over the budget of {limits}; {new} trains {size(new)}"
            + ("." if options else ", the least of all candidates (nothing fits).")
        )
        runner, rec = rec, new
    if runner == rec or not fits(runner):
        runner = next((s for s in fallbacks if s != rec and fits(s)), runner if runner != rec else LAST_RESORT)
    return rec, runner

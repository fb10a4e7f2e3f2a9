"""Recommend a transfer strategy from measurements of the model on the user's data: a pure, tested rule.

The classic decision guide crosses data size with similarity to the source (CS231n "Transfer Learning"
notes; Yosinski et al. 2014). Taken literally with one transferability score as the similarity, it was
right less often than the constant "always retrain" on the project's own cases, and scores like LogME
rank models no better than trivial rules on public benchmarks (Agostinelli et al., ECCV 2022). So this
rule reads what a probe measures instead (`tunelab.advice.measure`): a linear probe's cross-validated
accuracy on the frozen features after every block, and on a random-init control of the same
architecture. Where the per-block curve peaks says which blocks transfer (surgical fine-tuning, Lee et
al. ICLR 2023: the blocks to tune are where the shift is); the data per class says how many weights the
data can move.

| data  | late blocks specialised (probe falls after its peak) | features transfer to the last block       |
|-------|------------------------------------------------------|-------------------------------------------|
| small | `retrain:K`, K = the blocks up to the peak            | similar (gain over random >= bar): `none` |
|       |                                                      | else `small_strategy` (`FITTED`)          |
| large | `full` (runner-up `retrain:K`)                        | `full`                                    |

"Similar" is the classic guide's question, answered by the probe: how much better a linear head reads the
pretrained features than the same architecture's random ones.

K is one of two depths (`retrain_depths`: a third or two thirds of the blocks). The thresholds
(`Thresholds`, one set per modality: `FITTED`) were fitted on the tuning half of
`benchmarks/advice_cases.py` only and scored on the other half (`benchmarks/advice_suite.py`; the numbers
are in benchmarks/README.md). No model, no data, no I/O, no torch here: the rule is tested on hand-made
`Measurements` and can be re-run on cached ones with other thresholds or budgets.

May import: tunelab.advice.profile (the DataProfile type), tunelab.settings, tunelab.errors, numpy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from tunelab.advice.profile import DataProfile
from tunelab.errors import TunelabError
from tunelab.settings import ThresholdSettings, validate

NO_GAIN = 0.02
"""A probe gain over random weights this small is within a probe's noise: pretraining may buy nothing."""
BASELINE = "lora"
"""The constant rule the advice has to beat: the strategy best on most tuning-half cases of the suite
(`benchmarks/advice_suite.py`), reported with every advice so a user sees when the two disagree."""
LAST_RESORT = "none"
"""Tried after the parameter-efficient strategies when the preferred one exceeds a budget: a head only."""
HIT_TOLERANCE = 0.01
"""How close to the best strategy's mean score counts as right: 1 point, or the best's seed spread if larger."""


FITTED = {
    "image": {"small_per_class": 200, "similar_probe_gain": 0.2, "transfer_drop": 1.0, "small_strategy": "lora"},
    "text": {"small_per_class": 20, "similar_probe_gain": 0.1, "transfer_drop": 0.0, "small_strategy": "adapter"},
}
"""The thresholds `benchmarks/advice_suite.py --fit` chose on the suite's tuning half, per modality (most hits,
then least regret, over a grid; `small_strategy` is the modality's strongest constant rule there).

Per modality because one set for both was pulled two ways: fitted on all datasets but one, the text cases
made `adapter` the small-data strategy, which lost 5 of the 6 cases of the held-out image dataset digits
(where `lora` wins all six). Fitted per modality, the advice scored leave-one-dataset-out went from 12/26
to 18/26 cases, and with the text step budget below to 22/26 (23/28 with the two 3000-example text cases
added since; benchmarks/README.md). The values:
- images, from Fashion-MNIST: `lora` for small data (below 200 per class; VTAB-1k, Zhai et al. 2019, calls
  1000 examples per task its low-data regime), `none` when the probe reads the pretrained features 20
  points better than random ones of the same architecture, `retrain:K` never (`transfer_drop` 1.0).
- text, from SST-2 and CoNLL-2003 with every case trained for at least 75 optimizer steps
  (`benchmarks/advice_cases.py`, TEXT_STEPS): `full` from 20 examples (or tagged words) per class; below
  that, `retrain:K` when the probe falls at all after its peak, `none` from a probe gain of 10 points, else
  `adapter`. At 3 epochs the small text cases had trained 9-15 steps and most strategies scored an entity
  F1 of 0.000, so the text thresholds had been fitted to noise (400 per class, `adapter`; 2 of 8 text cases
  held out). Fitted on two datasets only, and 20 is the grid's lowest value: in effect "fine-tune all of
  a text encoder unless the data is tiny" (benchmarks/README.md).
"""


@dataclass(frozen=True, kw_only=True)
class Thresholds(ThresholdSettings):
    """Where the rule's boundaries lie: any value given, the rest fitted for the data's modality (`FITTED`).

    The fields and their limits are `tunelab.settings.ThresholdSettings` (defined once, shared with
    `tunelab advise`'s flags); the limits are checked here too, for library callers.
    """

    def __post_init__(self) -> None:
        validate(ThresholdSettings, asdict(self), "thresholds")

    def for_modality(self, modality: str) -> Thresholds:
        """These thresholds with each unset one (None, small_strategy 'auto') taken from `FITTED[modality]`."""
        given = {name: value for name, value in asdict(self).items() if value not in (None, "auto")}
        return Thresholds(**{**FITTED[modality], **given})


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
    probe_per_block: list[float] = field(default_factory=list)
    """Cross-validated linear-probe accuracy on the pretrained features after each block."""
    probe_control: float | None = None
    """The same probe on the random-init control's last-block features (on the control's examples)."""
    probe_pretrained: float | None = None
    """The pretrained last-block probe on the control's examples, what `probe_control` is compared with
    (None in measurements from before the control ran on a part of the sample: they were the same rows)."""
    rows: int = 0
    """Feature rows measured: the sampled examples, or their tagged words for token classification."""


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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Measurements:
        """The measurements `to_dict` wrote (e.g. cached as JSON), so `decide` can be re-run without a model."""
        fields = {**data, "profile": DataProfile(**data["profile"]), "evidence": Evidence(**data["evidence"])}
        return cls(**{**fields, "parameter_efficient": tuple(data.get("parameter_efficient", ()))})


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
    baseline: dict = field(default_factory=dict)
    """The constant rule it had to beat (`BASELINE`): its strategy, and whether the advice agrees with it."""

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        e = self.evidence
        lines = [f"recommendation: {self.recommendation}    runner-up: {self.runner_up}"]
        lines += [f"  - {r}" for r in self.reasons]
        b = self.baseline
        if b and not b["agrees"]:
            lines.append(
                f"  baseline: the rule '{b['rule']}' would choose {b['recommendation']}; `tunelab compare "
                f"--strategies {self.recommendation},{b['recommendation']}` settles it on your data"
            )
        if e.get("probe_per_block"):
            lines.append(_per_block_line(e["block_names"], e["probe_per_block"]))
        if "seconds" in e:
            pool = e.get("pool_size") or e["n"]
            of = "all" if e["sample_size"] >= pool else f"{e['sample_size']:,} of"
            extra = f" ({e['n']:,} training + {pool - e['n']:,} validation)" if pool > e["n"] else ""
            lines.append(
                f"measured {e.get('model', 'the model')} on {of} {pool:,} examples{extra} in {e['seconds']:.1f} s"
            )
        return "\n".join(lines)


def _per_block_line(names: list[str], scores: list[float]) -> str:
    """The per-block evidence in one line: the probe's accuracy after each block, the peak marked."""
    peak = int(np.argmax(scores))
    cells = [f"{n} {v:.1%}{' (peak)' if i == peak else ''}" for i, (n, v) in enumerate(zip(names, scores))]
    return "  per-block linear-probe accuracy of the pretrained features: " + ", ".join(cells)


def holds(score: float, best: float, best_spread: float = 0.0) -> bool:
    """Whether a strategy scoring `score` was a right choice next to the best one: within HIT_TOLERANCE of the
    best mean, or within the best's own seed spread (sample std) when that is larger. One rule for the
    suite's hit rate (benchmarks/advice_suite.py) and for `advise --verify`, so both call the same thing right.
    """
    return best - score <= max(HIT_TOLERANCE, best_spread) + 1e-9


def retrain_depths(blocks: int) -> tuple[int, ...]:
    """The K of retrain:K the rule chooses among: a third and two thirds of the blocks (9 -> 3, 6; 7 -> 2, 4).

    Two depths, not every K: a probe tells "only the last blocks are specialised" from "the middle ones are
    too", not one block from the next, and the ground truth the rule is checked on trains these two.
    """
    return tuple(sorted({min(max(blocks * j // 3, 1), max(blocks - 1, 1)) for j in (1, 2)}))


def transfer_depth(curve: list[float], drop: float) -> tuple[int, int, bool]:
    """(K, peak, specialised): freeze the K blocks up to the probe's peak, if the blocks after it fall away.

    `specialised` is whether the last block scores more than `drop` below the peak; K is the deepest of
    `retrain_depths` that freezes no block after the peak (the shallowest when even that one does).
    """
    peak = int(np.argmax(curve))
    depths = retrain_depths(len(curve))
    fitting = [d for d in depths if d <= peak + 1]
    return (max(fitting) if fitting else min(depths)), peak, curve[peak] - curve[-1] > drop


def decide(measurements: Measurements, thresholds: Thresholds = Thresholds(), budget: Budget = Budget()) -> Advice:
    """The rule on measured numbers: the recommendation, the runner-up, the reasons and the record."""
    m = measurements
    thresholds = thresholds.for_modality(m.profile.modality)
    recommendation, runner_up, reasons = _rule(m, thresholds, budget)
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
    baseline = {"rule": f"always {BASELINE}", "recommendation": BASELINE, "agrees": recommendation == BASELINE}
    return Advice(recommendation, runner_up, reasons, record, baseline)


def _rule(m: Measurements, t: Thresholds, budget: Budget) -> tuple[str, str, list[str]]:
    """(recommendation, runner-up, reasons): the table in the module docstring, then budget and caveats."""
    p, e = m.profile, m.evidence
    if not e.probe_per_block or e.probe_control is None:
        raise TunelabError("these measurements have no per-block probe accuracies; measure again with this version")
    curve = e.probe_per_block
    small = p.per_class_median < t.small_per_class
    pretrained = curve[-1] if e.probe_pretrained is None else e.probe_pretrained
    gain = pretrained - e.probe_control
    similar = gain >= t.similar_probe_gain
    k, peak, specialised = transfer_depth(curve, t.transfer_drop) if len(curve) > 1 else (0, 0, False)
    retrain = f"retrain:{k}" if len(curve) > 1 else "full"
    unit = p.unit
    reasons = [
        f"{'Little data' if small else 'Enough data to fine-tune everything'}: a median of "
        f"{p.per_class_median:g} {unit} per class ({p.n:,} examples, {p.classes} classes), "
        f"{'below' if small else 'at or above'} the "
        f"{t.small_per_class} per class from which fine-tuning everything is advised.",
        f"A linear probe on the pretrained last-block features reaches {curve[-1]:.1%} ({e.rows:,} {unit}, "
        "5-fold)"
        + ("" if e.control_size >= e.rows else f"; on {e.control_size:,} of them it reaches {pretrained:.1%}")
        + f", against {e.probe_control:.1%} on the same architecture with random weights (a gain of "
        f"{100 * gain:+.1f} points; {'similar to the source' if similar else 'not similar enough to use as they are'}"
        f" at the bar of {100 * t.similar_probe_gain:+.0f}); the largest class is {e.chance_accuracy:.1%}.",
        f"The probe peaks after block {peak} ({e.block_names[peak]}, {curve[peak]:.1%}) and ends at "
        f"{curve[-1]:.1%}: "
        + (
            f"a fall of {curve[peak] - curve[-1]:.1%}, more than {t.transfer_drop:.1%}, so the blocks after the "
            "peak are specialised to the source task."
            if specialised
            else f"within {100 * t.transfer_drop:.0f} points of the peak: the features transfer up to the last block."
            if t.transfer_drop < 1
            else "the per-block choice of retrain:K is off (set --transfer-drop, e.g. 0.05, to use it)."
        ),
    ]
    if not small:
        choice, runner = "full", retrain if specialised else t.small_strategy
    elif specialised:
        choice, runner = retrain, t.small_strategy
    elif similar:
        choice, runner = "none", t.small_strategy if t.small_strategy != "none" else "lora"
    else:
        choice, runner = t.small_strategy, "none" if t.small_strategy != "none" else "lora"
    fallbacks = (*m.parameter_efficient, LAST_RESORT)
    rec, runner, over_budget = _apply_budget(choice, runner, e, budget, fallbacks)
    second = f"{runner} is the runner-up" if runner != rec else "nothing else fits the budget, so there is no runner-up"
    if over_budget:  # the reasons speak of what the budget allows; the rule's own choice only as excluded
        reasons.append(over_budget)
    elif not small:
        reasons.append(
            "With this much data per class, fine-tuning every weight (full) adapts the features at no great "
            f"risk of overfitting; {second}."
        )
    elif specialised:
        reasons.append(
            f"{rec} keeps the {k} blocks that transfer frozen and retrains the specialised ones on the "
            f"new data; {second}."
        )
    elif similar:
        reasons.append(
            "With little data and pretrained features that already suit the task (the probe gains "
            f"{100 * gain:+.1f} points over random weights), a new head on them (none) fits without disturbing them; "
            f"{second}."
        )
    else:
        reasons.append(
            "With little data and features that transfer whole but gain less than "
            f"{100 * t.similar_probe_gain:.0f} points over random ones, {rec} trains few weights (a head"
            + ("" if rec == "none" else " and small updates inside the frozen blocks")
            + f") to adapt them; {second}."
        )
    if not small and gain < NO_GAIN and budget.params is None and budget.memory_mb is None:
        reasons.append(
            f"Pretrained features beat random ones by only {100 * gain:+.1f} points: training from scratch (scratch) "
            "may do as well; compare them."
        )
    if p.imbalance >= 10 and p.unit == "examples":  # words: entity tags are always rare next to O
        reasons.append(
            f"Classes are imbalanced ({p.per_class_max}:{p.per_class_min} between the largest "
            "and smallest); judge results by macro-F1, not accuracy."
        )
    if e.train_val_shift is not None and e.train_halves_shift and e.train_val_shift > 3 * e.train_halves_shift:
        ratio = e.train_val_shift / e.train_halves_shift
        reasons.append(
            f"Validation features differ from training features {ratio:.1f}x more than two halves of the "
            "training data do: expect validation scores below training ones."
        )
    return rec, runner, reasons


def _apply_budget(
    rec: str, runner: str, e: Evidence, budget: Budget, fallbacks: tuple[str, ...]
) -> tuple[str, str, str | None]:
    """(recommendation, runner-up, why the choice changed or None): a preferred strategy over budget swapped
    for the first of `fallbacks` that fits, and a runner-up that fits too.

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
    why = None
    if not fits(rec):
        options = [s for s in fallbacks if s != rec and fits(s)]
        cheapest = min(e.trainable_params, key=e.trainable_params.get, default=LAST_RESORT)
        new = options[0] if options else cheapest
        why = (
            f"Without a budget the rule would choose {rec}, which trains {size(rec)}, over the budget of {limits}; "
            f"{new} trains {size(new)}"
            + (
                ", the first parameter-efficient strategy that fits."
                if options
                else ", the least of all (nothing fits)."
            )
        )
        runner, rec = rec, new
    if runner == rec or not fits(runner):  # a runner-up the budget allows, else none at all (the advice alone)
        others = [s for s in (*fallbacks, *e.trainable_params) if s != rec and fits(s)]
        runner = others[0] if others else rec
    return rec, runner, why

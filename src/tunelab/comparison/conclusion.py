"""The report's words: number formats, the warnings above the table, and the plain-language conclusion.

One definition of each number: every score in the conclusion is a table cell (the mean of per-run scores,
`StrategyResult.score_mean`), every "within noise" is the table's paired interval (`paired.rule`); where a
sentence speaks of curves, it says they are mean validation curves. Nothing is assumed about which
strategy wins: each sentence is computed from the results passed in.

May import: comparison.results (the numbers), comparison.paired (the rule), comparison.plots (score names).
"""

from __future__ import annotations

from collections.abc import Sequence

from tunelab.comparison.paired import ABOVE, BELOW, MARGIN, NO_PAIRS, UNDECIDABLE, WIDE, WITHIN, Paired
from tunelab.comparison.plots import score_name
from tunelab.comparison.results import (
    FailedRun,
    StrategyResult,
    TransferBenefit,
    at_fraction,
    is_scratch,
    scratch_baseline,
)

OPTIMISTIC = "Scores were selected and measured on the same validation set, so they are optimistic."
"""The line a report carries when no run had a test set."""

# ---------------------------------------------------------------- numbers as text


def fmt_metric(value: float) -> str:
    return f"{value:.3f}"


def fmt_gain(value: float | None) -> str:
    return "—" if value is None else f"{value:+.3f}"


def fmt_params(count: float) -> str:
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if count >= limit:
            return f"{count / limit:.3g}{suffix}"
    return f"{count:.0f}"


def fmt_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.3g} s"
    return f"{seconds / 60:.3g} min" if seconds < 3600 else f"{seconds / 3600:.3g} h"


def fmt_bytes(count: float) -> str:
    for limit, suffix in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if count >= limit:
            return f"{count / limit:.3g} {suffix}"
    return f"{count:.0f} B"


def fmt_fraction(fraction: float) -> str:
    return f"{fraction * 100:.3g}%"


def fmt_score(r: StrategyResult) -> str:
    """'0.850 ± 0.071' for n >= 2; '0.900 (n=1)' for one run, which has no spread to show."""
    if r.n_runs < 2:
        return f"{fmt_metric(r.score_mean)} (n=1)"
    return f"{fmt_metric(r.score_mean)} ± {fmt_metric(r.score_std)}"


def fmt_interval(p: Paired) -> str:
    """'-0.050 [-0.685, +0.585]': the mean paired difference and its 95% t-interval."""
    return f"{p.mean:+.3f} [{p.low:+.3f}, {p.high:+.3f}]"


def fmt_vs_best(r: StrategyResult) -> str:
    """The table's 'vs best' cell: the paired difference to the best strategy, or why there is none."""
    p = r.vs_best
    if p is None:
        return "best"
    if p.verdict == NO_PAIRS:
        return "no shared seed/fold"
    if p.verdict == UNDECIDABLE:
        return f"{p.mean:+.3f}, 1 pair: not decidable"
    if p.verdict == WIDE:
        return f"{fmt_interval(p)}: too few runs to tell"
    return fmt_interval(p)


def fmt_augment(values: tuple[bool, ...]) -> str:
    return "+".join("on" if v else "off" for v in values) or "?"


def fmt_cached(values: tuple[int, ...]) -> str:
    return "+".join(map(str, values)) or "?"


def fmt_flags(r: StrategyResult) -> str:
    """'one-class ×3, at-chance': each flag name with how many runs raised it; '—' for none."""
    counts: dict[str, int] = {}
    for f in r.flags:
        counts[f.flag] = counts.get(f.flag, 0) + 1
    return ", ".join(name + (f" ×{n}" if n > 1 else "") for name, n in counts.items()) or "—"


def run_name(strategy: str, seed: int, fold: int | None) -> str:
    return f"{strategy} seed {seed}" + ("" if fold is None else f" fold {fold}")


def one_example(r: StrategyResult) -> str:
    """'on 153 test examples (one example = 0.0065)': the size behind a score, and one example's weight
    where the metric is a plain share of examples (accuracy); F1 scores move unevenly per example."""
    where = f"on {r.eval_examples:.0f} {r.scored_on} examples"
    if r.metric == "accuracy" and r.eval_examples > 0:
        where += f" (one example = {1 / r.eval_examples:.2g})"
    return where


# ---------------------------------------------------------------- above the table


def meta_line(results: Sequence[StrategyResult], failed: Sequence[FailedRun]) -> str:
    """What was run and what a score is, in one line under the title."""
    fractions = {r.train_fraction for r in results}
    runs = sum(r.n_runs for r in results)
    specs = len({r.strategy for r in results})
    top = [r for r in results if r.train_fraction == max(fractions)]
    sizes = sorted({f"{r.eval_examples:.0f}" for r in top})
    line = (
        f"{runs} finished run{'s' * (runs != 1)}"
        + (f" and {len(failed)} failed" if failed else "")
        + f": {specs} strateg{'ies' if specs != 1 else 'y'} × {len(fractions)} training-set "
        f"size{'s' * (len(fractions) > 1)}; score = {score_name(list(results))} of the epoch with the best "
        f"validation {results[0].metric}, measured on {' or '.join(sizes)} examples."
    )
    chances = [r.chance_score for r in top if r.chance_score is not None]
    if chances:
        line += f" Chance (always the most frequent class): {fmt_metric(sum(chances) / len(chances))}."
    return line


def _by_value(results: Sequence[StrategyResult], show) -> dict[str, list[str]]:
    """Display value -> strategies having it (each strategy once, recorded values only)."""
    groups: dict[str, list[str]] = {}
    for r in results:
        value = show(r)
        if value != "?" and r.strategy not in groups.setdefault(value, []):
            groups[value].append(r.strategy)
    return {v: s for v, s in groups.items() if s}


def warnings(results: Sequence[StrategyResult], failed: Sequence[FailedRun]) -> list[str]:
    """The lines a reader must see before the numbers: unequal conditions, optimistic scores, failed runs."""
    said = []
    differ = []
    # Only augmentation is a training condition. Cached blocks differ by strategy (a frozen prefix is cached, a
    # trained one cannot be) without changing what is learned: a cached block is the same frozen block in eval
    # mode run once instead of every epoch, so the table shows them as a column, not as a warning.
    for name, show in (("augmentation", lambda r: fmt_augment(r.augment)),):
        groups = _by_value(results, show)
        if len(groups) > 1:
            differ.append(f"{name} " + "; ".join(f"{v} for {', '.join(s)}" for v, s in groups.items()))
    if differ:
        said.append(
            "Conditions differ: "
            + "; ".join(differ)
            + ". Score gaps between these strategies mix the strategy with its training conditions."
        )
    scored = {r.scored_on for r in results}
    if scored == {"validation"}:
        said.append(OPTIMISTIC)
    elif scored != {"test"}:
        optimistic = sorted({r.strategy for r in results if "validation" in r.scored_on})
        said.append(
            f"Some runs had no test set ({', '.join(optimistic)}): their scores were selected and measured on the "
            "same validation set, so they are optimistic and do not compare with the test scores."
        )
    if failed:
        shown = ", ".join(run_name(f.strategy, f.seed, f.fold) for f in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        said.append(
            f"{len(failed)} run{'s' * (len(failed) > 1)} failed and {'are' if len(failed) > 1 else 'is'} in no "
            f"mean or comparison: {shown}{more} (reasons under Failed runs)."
        )
    return said


def flag_lines(results: Sequence[StrategyResult]) -> list[str]:
    """One line per flag a run raised: which run, which flag, the run's own message."""
    several = len({r.train_fraction for r in results}) > 1
    return [
        f"{run_name(r.strategy, f.seed, f.fold)}"
        + (f" ({fmt_fraction(r.train_fraction)} of the data)" if several else "")
        + f": {f.flag}: {f.message}"
        for r in results
        for f in r.flags
    ]


def failed_lines(failed: Sequence[FailedRun]) -> list[str]:
    """One line per failed run with its whole reason."""
    several = len({f.train_fraction for f in failed}) > 1
    return [
        run_name(f.strategy, f.seed, f.fold)
        + (f" ({fmt_fraction(f.train_fraction)} of the data)" if several else "")
        + f": {f.reason}"
        for f in failed
    ]


# ---------------------------------------------------------------- the conclusion


def _more(value: float, more: str, less: str, unit: str = "") -> str:
    if value == 0:
        return "the same"
    return f"{abs(value):.3f}{unit} {more if value > 0 else less}"


def _where(r: StrategyResult, several: bool) -> str:
    if several:
        return f"At {r.train_examples:.0f} training examples ({fmt_fraction(r.train_fraction)} of the data)"
    return f"On {r.train_examples:.0f} training examples"


def _names(results: Sequence[StrategyResult]) -> str:
    return ", ".join(r.strategy for r in results)


def conclusion(results: Sequence[StrategyResult], table: Sequence[TransferBenefit]) -> list[str]:
    """Plain-language findings, each number a cell of the results or three-benefits table.

    In order: the best, how sure (the paired rule), the cheapest within noise, flags, transfer against
    scratch, and how the data size changed that.
    """
    fractions = sorted({r.train_fraction for r in results})
    top = at_fraction(results, fractions[-1])
    best = next(r for r in top if r.best)
    said = [_best_sentence(best, top, len(fractions) > 1)]
    if len(top) > 1:
        said.append(_noise_sentence(best, top))
        said.append(_cheapest_sentence(best, next(r for r in top if r.cheapest_near_best), top))
    flagged = [r for r in top if r.flags]
    if flagged:
        said.append(
            "Sanity flags: "
            + "; ".join(f"{r.strategy} {fmt_flags(r)} (of {r.n_runs} run{'s' * (r.n_runs > 1)})" for r in flagged)
            + ". A flagged run's score is not evidence that the strategy learned the task (see Flags)."
        )
    said.extend(_transfer_sentences(results, table, fractions))
    return said


def _best_sentence(best: StrategyResult, top: list[StrategyResult], several: bool) -> str:
    runs = f"over {best.n_runs} runs" if best.n_runs > 1 else "from a single run"
    text = f"{_where(best, several)}, {best.strategy} scored best: mean {score_name(top)} {fmt_score(best)} {runs}"
    if len(top) == 1:
        return text + f", {one_example(best)}; it was the only strategy run."
    runner = max((r for r in top if r is not best), key=lambda r: r.score_mean)
    gap = best.score_mean - runner.score_mean
    text += f", {gap:.3f} above the runner-up {runner.strategy} ({fmt_metric(runner.score_mean)}), {one_example(best)}"
    if best.metric == "accuracy" and best.eval_examples > 0:
        count = round(gap * best.eval_examples, 6)  # a tie is 0 examples, not 1.7e-14
        text += f": the gap is {count:.2g} example{'s' * (round(count, 2) != 1)}"
    return text + "."


def _noise_sentence(best: StrategyResult, top: list[StrategyResult]) -> str:
    others = [r for r in top if r is not best]
    verdicts = (WITHIN, WIDE, BELOW, ABOVE, UNDECIDABLE, NO_PAIRS)
    by = {v: [r for r in others if r.vs_best.verdict == v] for v in verdicts}
    if len(by[UNDECIDABLE]) + len(by[NO_PAIRS]) == len(others) and max(r.n_runs for r in top) == 1:
        return (
            f"One run each: no spread, not decidable whether {best.strategy} is better than {_names(others)}; "
            "repeat with --seeds 3 (or --folds 5) before trusting the ranking."
        )
    parts = []
    margin = next(r.vs_best.margin for r in others)
    if by[WITHIN]:
        listed = "; ".join(f"{r.strategy} {fmt_interval(r.vs_best)}" for r in by[WITHIN])
        parts.append(
            f"Within noise of {best.strategy} (the 95% interval of the paired difference includes 0 and rules "
            f"out a loss of more than {margin:g}): {listed}"
        )
    if by[WIDE]:
        listed = "; ".join(f"{r.strategy} {fmt_interval(r.vs_best)}" for r in by[WIDE])
        parts.append(
            f"Too few runs to tell from {best.strategy} (the interval includes 0 but also losses larger than "
            f"{margin:g}): {listed}; more seeds (or a larger test set) would decide"
        )
    if by[BELOW]:
        listed = "; ".join(f"{r.strategy} {fmt_interval(r.vs_best)}" for r in by[BELOW])
        lead = (
            f"Below {best.strategy}"
            if parts
            else f"Paired over seeds/folds, {best.strategy} is clearly ahead: below it"
        )
        parts.append(f"{lead} (interval entirely below 0): {listed}")
    if by[ABOVE]:
        parts.append(
            f"{_names(by[ABOVE])} scored above {best.strategy} on the seeds/folds both finished, though not in "
            "the mean over all runs: failed runs make the two sets differ"
        )
    if by[UNDECIDABLE]:
        parts.append(f"One pair only with {_names(by[UNDECIDABLE])}: not decidable")
    if by[NO_PAIRS]:
        parts.append(f"{_names(by[NO_PAIRS])} shares no seed/fold with {best.strategy}: not compared")
    return ". ".join(parts) + "."


def _margin(top: list[StrategyResult]) -> float:
    return next((r.vs_best.margin for r in top if r.vs_best is not None), MARGIN)


def _cheapest_sentence(best: StrategyResult, cheap: StrategyResult, top: list[StrategyResult]) -> str:
    time = fmt_seconds(best.train_seconds_mean)
    if cheap is best:
        if any(r.within_noise for r in top if r is not best):
            return (
                f"No strategy within noise of {best.strategy} trained faster, so it is also the cheapest good "
                f"choice ({time} of training per run)."
            )
        if all(r.vs_best.verdict == BELOW for r in top if r is not best):
            return f"Every other strategy is below it, so it is also the cheapest good choice ({time} per run)."
        return (
            f"No cheaper strategy is shown to be as good (within {_margin(top):g} of it), so the cheapest good "
            f"choice is not decidable either; {best.strategy} took {time} of training per run."
        )
    ratio = best.train_seconds_mean / max(cheap.train_seconds_mean, 1e-9)
    return (
        f"{cheap.strategy} is the cheapest strategy within noise of the best: {fmt_metric(cheap.score_mean)}, "
        f"{best.score_mean - cheap.score_mean:.3f} below {best.strategy} "
        f"(paired difference {fmt_interval(cheap.vs_best)}: includes 0, rules out a loss over "
        f"{cheap.vs_best.margin:g}), "
        f"in {fmt_seconds(cheap.train_seconds_mean)} of training instead of {time} ({ratio:.1f}× less), "
        f"with {fmt_params(cheap.trainable_params)} trainable parameters instead of "
        f"{fmt_params(best.trainable_params)}."
    )


def _transfer_sentences(
    results: Sequence[StrategyResult], table: Sequence[TransferBenefit], fractions: list[float]
) -> list[str]:
    top = at_fraction(results, fractions[-1])
    baseline = scratch_baseline(results)
    if baseline.result is None:
        return ["Scratch was not run, so what transfer buys cannot be measured; add scratch to --strategies."]
    transfer = [r for r in top if not is_scratch(r.strategy)]
    if not transfer:
        return []
    if not baseline.usable:
        return [f"Against training from scratch: {baseline.warning}"]
    lead = max(transfer, key=lambda r: r.score_mean)
    base = baseline.result
    b = next(row for row in table if row.strategy == lead.strategy)
    s = next(row for row in table if row.strategy == base.strategy)
    slope = (
        "with a single epoch there is no slope to compare"
        if b.slope_gain is None
        else f"climbed {_more(b.slope_gain, 'faster', 'slower', ' per epoch')} over the first epochs "
        f"({fmt_gain(b.slope)} vs {fmt_gain(s.slope)})"
    )
    said = [
        f"Against training from scratch, {lead.strategy} (the best transferring strategy) started "
        f"{_more(b.start_gain, 'higher', 'lower')} after the first epoch of the mean validation curve "
        f"({fmt_metric(b.start)} vs {fmt_metric(s.start)}), {slope}, and ended "
        f"{_more(lead.score_mean - base.score_mean, 'higher', 'lower')} in mean {score_name(top)} "
        f"({fmt_metric(lead.score_mean)} vs {fmt_metric(base.score_mean)})."
    ]
    if b.slope_gain is not None and b.slope_gain < 0 < b.start_gain:
        said[0] += " A slower climb is expected when transfer already starts high."
    if baseline.warning:
        said[0] += " " + baseline.warning
    if len(fractions) > 1:
        said.extend(_margins(results, fractions))
    return said


def _margins(results: Sequence[StrategyResult], fractions: list[float]) -> list[str]:
    """How the best transferring strategy's margin over a usable scratch changes with the training-set size."""
    margins, skipped = [], []
    for fraction in fractions:
        group = at_fraction(results, fraction)
        baseline = scratch_baseline(group)
        others = [r for r in group if not is_scratch(r.strategy)]
        if baseline.result is None or not others:
            continue
        if not baseline.usable:
            skipped.append(f"{baseline.result.train_examples:.0f}")
            continue
        winner = max(others, key=lambda r: r.score_mean)
        margins.append((winner.score_mean - baseline.result.score_mean, winner, baseline.result))
    if len(margins) < 2:
        return []
    listed = ", ".join(f"{w.train_examples:.0f} examples {gain:+.3f}" for gain, w, _ in margins)
    if skipped:
        listed += f"; left out, scratch never left chance: {', '.join(skipped)} examples"
    gain, winner, base = max(margins, key=lambda m: m[0])
    if gain <= 0:
        return [
            f"Scratch matched or beat every transferring strategy at every training-set size (best margin of "
            f"transfer over scratch: {listed})."
        ]
    return [
        f"Transfer helped most at {winner.train_examples:.0f} training examples "
        f"({fmt_fraction(winner.train_fraction)} of the data), where {winner.strategy} beat scratch by "
        f"{gain:.3f} ({fmt_metric(winner.score_mean)} vs {fmt_metric(base.score_mean)}). Best margin of "
        f"transfer over scratch by training-set size: {listed}."
    ]

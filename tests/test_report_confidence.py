"""How sure a report is: n=1, the paired noise rule, failed runs, sanity flags, conditions, test sets, bands.

Hand-made run directories (test_report.make_run) and hand-made (seed, fold, score) triples, with numbers
chosen so every interval can be checked by hand. No training.
"""

from __future__ import annotations

import csv
import html
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from test_report import make_run
from tunelab.comparison.conclusion import OPTIMISTIC
from tunelab.comparison.html import render_markdown
from tunelab.comparison.paired import BELOW, NO_PAIRS, UNDECIDABLE, WIDE, WITHIN, paired, t_critical
from tunelab.comparison.plots import clipped, learning_curves_figure
from tunelab.comparison.report import report_from_runs
from tunelab.comparison.results import FailedRun, aggregate, benefit_table, collect
from tunelab.errors import TunelabError


def make(root: Path, runs: dict, extra=None) -> Path:
    """runs: (strategy, seed) -> (curve, seconds); extra(strategy, seed) -> summary keys to add."""
    for (strategy, seed), (curve, seconds) in runs.items():
        more = extra(strategy, seed) if extra else None
        make_run(root / strategy / f"s{seed}", strategy, seed, 1.0, curve, seconds, extra=more)
    return root


def report(root: Path, out: Path, failed=(), paths=None) -> tuple[str, str]:
    """(results.md, report.html) of the runs below `root`."""
    page = report_from_runs(paths or [root], out, failed=failed)
    return (out / "results.md").read_text(), page.read_text()


def markdown(root: Path) -> str:
    """results.md's text alone, without drawing plots: for tests that read only the Markdown."""
    results = aggregate(collect([root]))
    return render_markdown("t", results, benefit_table(results))


def row(md: str, start: str, table: str = "results") -> list[str]:
    """The cells of the one row whose first cell starts with `start`, in the results or the benefits table."""
    section = md.split("\n## ")[0] if table == "results" else md.split("## Three benefits")[1].split("## ")[0]
    found = [line for line in section.splitlines() if line.startswith(f"| {start}")]
    assert len(found) == 1, (start, found)
    return [c.strip() for c in found[0].strip("|").split(" | ")]


# ---------------------------------------------------------------- the paired rule on hand-made runs


def test_t_critical_values_come_from_the_table_then_the_normal():
    assert [t_critical(df) for df in (1, 2, 4, 30, 31, 500)] == [12.706, 4.303, 2.776, 2.042, 1.96, 1.96]
    with pytest.raises(ValueError):
        t_critical(0)


def test_paired_rule_finds_a_clear_winner():
    best = [(0, None, 0.90), (1, None, 0.91), (2, None, 0.92)]
    other = [(0, None, 0.80), (1, None, 0.82), (2, None, 0.81)]
    p = paired(other, best, "full")
    # differences -0.10, -0.09, -0.11: mean -0.10, sd 0.01, half width 4.303 * 0.01 / sqrt(3) = 0.02484
    assert (p.against, p.n, p.verdict) == ("full", 3, BELOW)
    assert (p.mean, p.low, p.high) == pytest.approx((-0.10, -0.12484, -0.07516), abs=1e-5)


def test_paired_rule_calls_a_noisy_gap_too_few_runs_not_a_tie():
    best = [(0, 1, 0.90), (1, 1, 0.85), (2, 1, 0.95)]
    other = [(0, 1, 0.92), (1, 1, 0.82), (2, 1, 0.96)]  # +0.02, -0.03, +0.01
    p = paired(other, best, "full")
    # the interval includes 0 but also a loss of 6 points: these runs cannot tell the two apart
    assert p.verdict == WIDE and p.low < -0.01 and p.high > 0 and p.mean == pytest.approx(0.0)
    assert paired(other, best, "full", margin=0.1).verdict == WITHIN  # a margin of 10 points accepts it


def test_two_seeds_do_not_make_a_ten_point_gap_a_tie():
    # SST-2, none vs full: -0.098 and -0.120 over two seeds; t at 1 degree of freedom is 12.7
    p = paired([(0, None, 0.733), (1, None, 0.711)], [(0, None, 0.831), (1, None, 0.831)], "full")
    assert p.low < 0 < p.high and p.verdict == WIDE


def test_a_tight_tie_is_within_noise_and_the_margin_is_inclusive():
    best = [(0, None, 0.900), (1, None, 0.910), (2, None, 0.920)]
    other = [(0, None, 0.899), (1, None, 0.911), (2, None, 0.919)]  # -0.001, +0.001, -0.001
    p = paired(other, best, "full")
    assert p.verdict == WITHIN and -0.01 < p.low < 0 < p.high
    assert paired(other, best, "full", margin=-p.low).verdict == WITHIN
    assert paired(other, best, "full", margin=-p.low - 1e-6).verdict == WIDE


def test_paired_rule_with_one_pair_is_not_decidable_and_unpaired_runs_are_left_out():
    p = paired([(0, None, 0.7), (5, None, 0.1)], [(0, None, 0.8), (1, None, 0.9)], "full")
    assert (p.n, p.verdict, p.low, p.high) == (1, UNDECIDABLE, None, None)
    assert p.mean == pytest.approx(-0.1)  # seed 5 has no partner: it does not count
    assert paired([(3, None, 0.7)], [(0, None, 0.8)], "full").verdict == NO_PAIRS


def test_a_clear_winner_is_stated_and_is_the_cheapest_good_choice(tmp_path):
    runs = {("full", s): ([0.5, score], 40.0) for s, score in enumerate((0.90, 0.91, 0.92))}
    runs |= {("none", s): ([0.5, score], 10.0) for s, score in enumerate((0.80, 0.82, 0.81))}
    md = markdown(make(tmp_path / "runs", runs))
    assert row(md, "none |")[4] == "-0.100 [-0.125, -0.075]"
    assert "Paired over seeds/folds, full is clearly ahead: below it (interval entirely below 0): none -0.100" in md
    assert "Every other strategy is below it, so it is also the cheapest good choice (40 s per run)." in md
    assert "Within noise of full" not in md


def test_a_tie_within_noise_makes_the_cheaper_strategy_the_choice(tmp_path):
    runs = {("full", s): ([0.5, score], 40.0) for s, score in enumerate((0.900, 0.910, 0.920))}
    runs |= {("none", s): ([0.5, score], 10.0) for s, score in enumerate((0.899, 0.911, 0.920))}
    md = markdown(make(tmp_path / "runs", runs))
    # none's mean equals full's; ties go to the less training time, so none is best and full within noise
    assert row(md, "none")[0] == "none ★◆" and row(md, "full")[0] == "full ≈"
    assert "Within noise of none (the 95% interval of the paired difference includes 0 and rules out a loss" in md


def test_a_noisy_tie_is_reported_as_too_few_runs_and_earns_no_cheapest_mark(tmp_path):
    runs = {("full", s): ([0.5, score], 40.0) for s, score in enumerate((0.90, 0.85, 0.95))}
    runs |= {("none", s): ([0.5, score], 10.0) for s, score in enumerate((0.88, 0.86, 0.94))}
    md = markdown(make(tmp_path / "runs", runs))
    assert row(md, "full")[0] == "full ★◆" and row(md, "none")[0] == "none"
    assert row(md, "none |")[4].endswith(": too few runs to tell")
    assert "Too few runs to tell from full (the interval includes 0 but also losses larger than 0.01): none" in md
    assert "No cheaper strategy is shown to be as good (within 0.01 of it)" in md
    assert "too few runs to tell" in md.split("## ")[0]  # the legend states the rule with its margin


# ---------------------------------------------------------------- n=1


def test_one_run_renders_as_n1_not_as_zero_spread(tmp_path):
    root = make(tmp_path / "runs", {("none", 0): ([0.5, 0.7], 5.0), ("full", 0): ([0.6, 0.9], 9.0)})
    md, page = report(root, tmp_path / "out")
    assert row(md, "full")[2:4] == ["1", "0.900 (n=1)"]
    assert "± 0.000" not in md and "± 0.000" not in page and "0.900 (n=1)" in page
    assert "mean validation accuracy 0.900 (n=1) from a single run" in md
    assert "One run each: no spread, not decidable whether full is better than none" in md


# ---------------------------------------------------------------- failed runs


def test_a_failed_run_is_listed_with_its_reason_and_left_out_of_every_mean(tmp_path):
    runs = {("none", 0): ([0.7, 0.78], 10.0), ("none", 1): ([0.7, 0.82], 12.0), ("full", 0): ([0.6, 0.80], 40.0)}
    root = make(tmp_path / "runs", runs)
    broken = make_run(root / "full" / "s1", "full", 1, 1.0, [0.6], 44.0, complete=False)  # no summary.json
    reason = "CUDA out of memory. Tried to allocate 2.00 GiB " + "(detail) " * 20
    lost = FailedRun(broken, "full", 1, None, 1.0, reason)
    never = FailedRun(root / "scratch" / "s0", "scratch", 0, None, 1.0, "exit status -9 (killed: out of memory)")
    md, page = report(root, tmp_path / "out", failed=[lost, never])

    full = row(md, "full |")
    assert full[2:4] == ["1 (+1 failed)", "0.800 (n=1)"]  # 0.80 alone: seed 1 counts nowhere
    failed = row(md, "full ✗ (seed 1)")
    assert failed[2:4] == ["failed", "failed"] and failed[5].startswith("failed: CUDA out of memory.")
    assert failed[5].endswith("…") and len(failed[5]) <= len("failed: ") + 90
    assert row(md, "scratch ✗ (seed 0)")[5] == "failed: exit status -9 (killed: out of memory)"
    assert "2 runs failed and are in no mean or comparison: full seed 1, scratch seed 0" in md
    assert f"- full seed 1: {reason}" in md  # the whole reason under Failed runs
    assert page.count('<tr class="failed">') == 2 and "CUDA out of memory" in page

    # none ties full on the mean (0.80) and trains faster, so it is best; full pairs with it on seed 0 only
    results = {r.strategy: r for r in aggregate(collect([root], skip=[broken]), [lost, never])}
    assert results["full"].n_failed == 1 and results["full"].vs_best.n == 1
    assert results["full"].vs_best.verdict == UNDECIDABLE and results["none"].best

    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "results.csv").read_text())))
    assert [(r["status"], r["strategy"], r["seed"]) for r in rows if r["status"] == "failed"] == [
        ("failed", "full", "1"),
        ("failed", "scratch", "0"),
    ]


def test_a_compare_where_every_run_failed_is_an_error_naming_the_reasons(tmp_path):
    lost = FailedRun(tmp_path / "runs" / "none" / "s0", "none", 0, None, 1.0, "exit status 1")
    with pytest.raises(TunelabError, match="every run failed.*none seed 0: exit status 1"):
        report_from_runs([tmp_path / "runs" / "none" / "s0"], tmp_path / "out", failed=[lost])


# ---------------------------------------------------------------- flags and the scratch baseline


ONE_CLASS = {"flag": "one-class", "message": "the best model predicted 'a' for all of the validation set"}
AT_CHANCE = {"flag": "at-chance", "message": "accuracy 0.50 is not above chance 0.50"}
THREE = {
    ("none", 0): ([0.70, 0.78, 0.80], 10.0),
    ("none", 1): ([0.72, 0.80, 0.82], 12.0),
    ("full", 0): ([0.60, 0.75, 0.85], 40.0),
    ("full", 1): ([0.65, 0.85, 0.90], 44.0),
    ("scratch", 0): ([0.50, 0.50, 0.50], 38.0),
    ("scratch", 1): ([0.50, 0.50, 0.51], 42.0),
}


def test_flags_are_shown_in_the_table_the_list_and_the_conclusion(tmp_path):
    root = make(tmp_path / "runs", THREE, lambda s, seed: {"flags": [ONE_CLASS]} if s == "none" else None)
    md, page = report(root, tmp_path / "out")
    assert row(md, "none")[0].endswith("⚑") and row(md, "none")[5] == "one-class ×2" and row(md, "full")[5] == "—"
    assert "## Flags" in md and f"- none seed 0: one-class: {ONE_CLASS['message']}" in md
    assert "Sanity flags: none one-class ×2 (of 2 runs)." in md
    assert "<h2>Flags</h2>" in page and "predicted &#x27;a&#x27; for all" in page


def test_benefits_are_not_computed_against_a_scratch_that_never_left_chance(tmp_path):
    root = make(tmp_path / "runs", THREE, lambda s, seed: {"flags": [AT_CHANCE]} if s == "scratch" else None)
    table = benefit_table(aggregate(collect([root])))
    assert all(b.start_gain is None and b.slope_gain is None and b.asymptote_gain is None for b in table)
    md, page = report(root, tmp_path / "out")
    said = "Gains against scratch not computed: the scratch baseline never left chance (at-chance in 2 of 2 runs)."
    assert f"> ⚠ {said}" in md and f"- Against training from scratch: {said}" in md
    assert row(md, "full", "benefits")[4:] == ["—", "—", "—"]
    assert "started" not in md and said in page


def test_benefits_against_a_partly_flagged_scratch_carry_a_warning(tmp_path):
    root = make(
        tmp_path / "runs", THREE, lambda s, seed: {"flags": [AT_CHANCE]} if (s, seed) == ("scratch", 0) else None
    )
    assert benefit_table(aggregate(collect([root])))[1].start_gain == pytest.approx(0.625 - 0.50)
    md = markdown(root)
    assert "Scratch is flagged at-chance in 1 of 2 runs: the gains against it overstate what transfer buys." in md
    assert "started 0.125 higher after the first epoch of the mean validation curve" in md


# ---------------------------------------------------------------- conditions and the scoring set


def test_conditions_are_columns_and_a_difference_is_a_visible_warning(tmp_path):
    def conditions(strategy, seed):
        cached = strategy == "none"
        return {"augment": not cached, "cached_blocks": int(cached)}

    md, page = report(make(tmp_path / "runs", THREE, conditions), tmp_path / "out")
    header = row(md, "Strategy")
    assert header[8:10] == ["Augment", "Cached blocks"]
    assert row(md, "none")[8:10] == ["off", "1"] and row(md, "full")[8:10] == ["on", "0"]
    said = (
        "Conditions differ: augmentation off for none; on for full, scratch. "
        "Score gaps between these strategies mix the strategy with its training conditions."
    )
    assert f"> ⚠ {said}" in md and f'<p class="warn">⚠ {said}</p>' in page

    # Cached blocks alone are no difference in conditions: a cached frozen block computes what it would every epoch.
    md, _ = report(
        make(tmp_path / "cached", THREE, lambda s, seed: {"augment": False, "cached_blocks": int(s == "none")}),
        tmp_path / "c",
    )
    assert "Conditions differ" not in md and row(md, "none")[8:10] == ["off", "1"]

    md, _ = report(
        make(tmp_path / "same", THREE, lambda s, seed: {"augment": True, "cached_blocks": 0}), tmp_path / "b"
    )
    assert "Conditions differ" not in md and row(md, "none")[8:10] == ["on", "0"]


def test_without_a_test_set_the_report_says_scores_are_optimistic(tmp_path):
    md, page = report(make(tmp_path / "runs", THREE), tmp_path / "out")
    assert f"> ⚠ {OPTIMISTIC}" in md and OPTIMISTIC in page
    assert row(md, "none")[6:8] == ["100", "validation"]


def test_with_a_test_set_the_table_and_conclusion_quote_the_test_score(tmp_path):
    def tested(strategy, seed):  # test scores 0.1 below each run's best validation score, on 153 test images
        best = max(THREE[strategy, seed][0])
        return {"score": best - 0.1, "val_score": best, "scored_on": "test", "eval_examples": 153,
                "test_examples": 153, "chance_score": 0.5}  # fmt: skip

    md, page = report(make(tmp_path / "runs", THREE, tested), tmp_path / "out")
    assert OPTIMISTIC not in md and OPTIMISTIC not in page and "optimistic" not in md
    assert row(md, "Strategy")[3] == "test accuracy (mean ± std)"
    assert row(md, "full")[3:8] == ["0.775 ± 0.035", "best", "—", "153", "test"]
    assert "score = test accuracy of the epoch with the best validation accuracy, measured on 153 examples." in md
    assert "Chance (always the most frequent class): 0.500." in md
    assert "full scored best: mean test accuracy 0.775 ± 0.035 over 2 runs" in md  # the table's number, not 0.875
    assert "on 153 test examples (one example = 0.0065)" in md
    assert "ended 0.370 higher in mean test accuracy (0.775 vs 0.405)" in md


def test_mixed_scoring_sets_are_called_out(tmp_path):
    root = make(
        tmp_path / "runs", THREE, lambda s, seed: {"scored_on": "test", "test_examples": 50} if s == "full" else None
    )
    md = markdown(root)
    assert OPTIMISTIC not in md
    assert "Some runs had no test set (none, scratch): their scores were selected and measured on the same" in md
    assert row(md, "Strategy")[3] == "accuracy (test or validation) (mean ± std)" and row(md, "full")[6:8] == [
        "50",
        "test",
    ]


# ---------------------------------------------------------------- bands


def test_clipped_keeps_a_spread_inside_the_metric_range():
    assert clipped(0.9, 0.3) == (pytest.approx(0.6), 1.0)
    assert clipped(0.1, 0.3) == (0.0, pytest.approx(0.4))
    assert clipped(0.5, 0.1) == (pytest.approx(0.4), pytest.approx(0.6))


def test_learning_curve_bands_stay_in_0_1(tmp_path):
    runs = {
        ("full", 0): ([1.00, 1.00], 5.0),
        ("full", 1): ([0.80, 0.98], 5.0),  # epoch 1: mean 0.9, std 0.141: unclipped band up to 1.041
        ("scratch", 0): ([0.00, 0.40], 5.0),
        ("scratch", 1): ([0.20, 0.50], 5.0),  # epoch 1: mean 0.1, std 0.141: unclipped band down to -0.041
    }
    fig = learning_curves_figure(aggregate(collect([make(tmp_path / "runs", runs)])))
    bands = [path.vertices[:, 1] for c in fig.axes[0].collections for path in c.get_paths()]
    assert len(bands) == 2
    ys = [y for band in bands for y in band]
    assert min(ys) == 0.0 and max(ys) == 1.0


# ---------------------------------------------------------------- one set of numbers


class _Cells(HTMLParser):
    """The text of every cell of the table with the given id, row by row (header row first)."""

    def __init__(self, table_id: str):
        super().__init__()
        self.table_id, self.inside, self.rows, self.cell = table_id, False, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.inside = dict(attrs).get("id") == self.table_id
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def _markdown_rows(md: str, header_start: str) -> list[list[str]]:
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header_start}"))
    body = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if not re.fullmatch(r"\| (-{3}:? \| )*-{3}:? \|", line):
            body.append([c.replace("\\|", "|") for c in line[2:-2].split(" | ")])
    return body


def test_results_md_and_report_html_show_the_same_numbers(tmp_path):
    def everything(strategy, seed):
        flags = [AT_CHANCE] if strategy == "scratch" else []
        return {"flags": flags, "augment": strategy != "none", "cached_blocks": int(strategy == "none")}

    root = make(tmp_path / "runs", THREE, everything)
    lost = FailedRun(root / "full" / "s2", "full", 2, None, 1.0, "exit status 1 | a pipe in the reason")
    md, page = report(root, tmp_path / "out", failed=[lost])
    for table_id, first in (("results", "Strategy"), ("benefits", "Strategy | Start")):
        parser = _Cells(table_id)
        parser.feed(page)
        assert parser.rows == _markdown_rows(md, first) and len(parser.rows) > 3, table_id
    conclusion_md = re.findall(r"^- (.*)$", md.split("## Conclusion")[1], re.MULTILINE)
    conclusion_html = re.findall(r"<li>(.*?)</li>", page.split('<ul class="conclusion">')[1].split("</ul>")[0])
    assert conclusion_md and conclusion_md == [html.unescape(s) for s in conclusion_html]

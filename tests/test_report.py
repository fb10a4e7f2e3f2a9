"""The comparison report from hand-made run directories: collecting, aggregation, the three benefits, the files.

No training: each fake run is config.yaml (written by tunelab.settings.fields.to_yaml), metrics.jsonl and summary.json
with numbers chosen so every mean, std and mark can be checked by hand.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tunelab.comparison.report import report_from_runs, write_report
from tunelab.comparison.results import aggregate, benefit_table, benefits, collect
from tunelab.errors import TunelabError
from tunelab.settings import TrainConfig, to_yaml

# (fraction, strategy, seed) -> (validation curve, train seconds); score = best of the curve.
# Fraction 1.0 (400 examples): full is best (0.85 ± 0.0707); none (0.80) is within one std and 42/11 = 3.8x cheaper.
# scratch seed 1 stopped early after 2 epochs. Fraction 0.25 (100 examples): none is best and the only one near it.
RUNS = {
    (1.0, "none", 0): ([0.70, 0.76, 0.78], 10.0),
    (1.0, "none", 1): ([0.72, 0.80, 0.82], 12.0),
    (1.0, "full", 0): ([0.60, 0.75, 0.80], 40.0),
    (1.0, "full", 1): ([0.65, 0.85, 0.90], 44.0),
    (1.0, "scratch", 0): ([0.30, 0.40, 0.50], 38.0),
    (1.0, "scratch", 1): ([0.35, 0.50], 42.0),
    (0.25, "none", 0): ([0.60, 0.70, 0.70], 3.0),
    (0.25, "none", 1): ([0.64, 0.72, 0.74], 5.0),
    (0.25, "full", 0): ([0.40, 0.55, 0.60], 12.0),
    (0.25, "full", 1): ([0.45, 0.60, 0.64], 14.0),
    (0.25, "scratch", 0): ([0.20, 0.25, 0.30], 11.0),
    (0.25, "scratch", 1): ([0.22, 0.30, 0.34], 13.0),
}
TRAINABLE = {"none": 1_000, "full": 100_000, "scratch": 100_000}
TOTAL = 100_000


def make_run(
    path: Path,
    strategy: str,
    seed: int,
    fraction: float,
    curve: list[float],
    seconds: float,
    *,
    model: str = "tiny-cnn",
    complete: bool = True,
    folds: int | None = None,
    fold: int = 0,
    extra: dict | None = None,
) -> Path:
    """A finished (or, with complete=False, interrupted) run directory, as `tunelab train` leaves it.

    The summary is a format-1 one (no test set, flags or conditions) unless `extra` adds or overrides keys.
    """
    path.mkdir(parents=True)
    config = TrainConfig(
        model=model,
        strategy=strategy,
        data="data/flowers",
        out=str(path),
        seed=seed,
        train_fraction=fraction,
        epochs=3,
        folds=folds,
        fold=fold,
    )
    (path / "config.yaml").write_text(to_yaml(config))
    lines = [
        {
            "epoch": i + 1,
            "train_loss": 1 - c,
            "val_loss": 1 - c,
            "val_accuracy": c,
            "val_macro_f1": c,
            "lr": 1e-3,
            "seconds": seconds / len(curve) - 0.5 + i * 0.5,
        }
        for i, c in enumerate(curve)
    ]
    (path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if complete:
        summary = {
            "format_version": 1,
            "model": model,
            "strategy": strategy,
            "task": "image-classification",
            "metric": "accuracy",
            "score": max(curve),
            "best_epoch": curve.index(max(curve)) + 1,
            "epochs": len(curve),
            "trainable_params": TRAINABLE[strategy.split(":")[0]],
            "total_params": TOTAL,
            "train_examples": int(400 * fraction),
            "val_examples": 100,
            "classes": ["a", "b"],
            "train_seconds": seconds,
            "peak_memory_mb": 500.0 + seed * 10 + fraction * 100,
            "checkpoint_bytes": TRAINABLE[strategy.split(":")[0]] * 4 + seed * 100,
            **(extra or {}),
        }
        (path / "summary.json").write_text(json.dumps(summary))
    return path


def make_runs(root: Path, runs: dict = RUNS) -> Path:
    """The RUNS table as run directories laid out like `tunelab compare` does: root/fraction-F/STRATEGY/sSEED."""
    for (fraction, strategy, seed), (curve, seconds) in runs.items():
        make_run(root / f"fraction-{fraction:g}" / strategy / f"s{seed}", strategy, seed, fraction, curve, seconds)
    return root


def by_key(results):
    return {(r.train_fraction, r.strategy): r for r in results}


@pytest.fixture
def runs_root(tmp_path):
    return make_runs(tmp_path / "cmp" / "runs")


# ---------------------------------------------------------------- collecting


def test_collect_finds_runs_below_a_parent_and_reads_them(runs_root):
    records = collect([runs_root])
    assert len(records) == 12
    r = next(r for r in records if (r.train_fraction, r.strategy, r.seed) == (1.0, "full", 1))
    assert (r.model, r.data, r.fold, r.metric) == ("tiny-cnn", "data/flowers", None, "accuracy")
    assert r.score == 0.90 and r.curve == (0.65, 0.85, 0.90)
    assert (r.train_examples, r.val_examples, r.trainable_params, r.total_params) == (400, 100, 100_000, 100_000)
    assert r.seconds_per_epoch == pytest.approx((44 / 3 - 0.5 + 44 / 3 + 44 / 3 + 0.5) / 3)
    assert r.train_seconds == 44.0 and r.checkpoint_bytes == 400_100 and r.peak_memory_mb == 610.0
    # a format-1 summary: scored on the validation set it was selected on, nothing flagged, conditions unknown
    assert (r.val_score, r.scored_on, r.eval_examples, r.test_examples) == (0.90, "validation", 100, 0)
    assert (r.chance_score, r.flags, r.augment, r.cached_blocks) == (None, (), None, None)


def test_new_summary_keys_are_read(tmp_path):
    extra = {
        "score": 0.7,
        "val_score": 0.9,
        "scored_on": "test",
        "eval_examples": 153,
        "test_examples": 153,
        "chance_score": 0.54,
        "flags": [{"flag": "at-chance", "message": "no better than always saying 'a'"}],
        "augment": False,
        "cached_blocks": 1,
    }
    r = collect([make_run(tmp_path / "r", "none", 2, 1.0, [0.5, 0.9], 5.0, extra=extra)])[0]
    assert (r.score, r.val_score, r.scored_on, r.eval_examples, r.test_examples) == (0.7, 0.9, "test", 153, 153)
    assert (r.chance_score, r.augment, r.cached_blocks) == (0.54, False, 1)
    assert [(f.flag, f.message, f.seed, f.fold) for f in r.flags] == [
        ("at-chance", "no better than always saying 'a'", 2, None)
    ]


@pytest.mark.parametrize(
    "extra, match",
    [({"scored_on": "train"}, "scored_on"), ({"flags": {"flag": "x"}}, "flags"), ({"flags": ["x"]}, "flag")],
)
def test_damaged_new_keys_are_an_error_naming_the_file(tmp_path, extra, match):
    run = make_run(tmp_path / "r", "none", 0, 1.0, [0.5], 5.0, extra=extra)
    with pytest.raises(TunelabError, match=match) as info:
        collect([run])
    assert str(run / "summary.json") in str(info.value)


def test_a_run_given_directly_and_through_its_parent_counts_once(runs_root):
    one = runs_root / "fraction-1" / "none" / "s0"
    assert len(collect([one, runs_root])) == 12
    assert [r.path for r in collect([one])] == [one]


def test_folds_are_recorded(tmp_path):
    run = make_run(tmp_path / "r", "none", 0, 1.0, [0.5, 0.6], 5.0, folds=5, fold=3)
    assert collect([run])[0].fold == 3


def test_an_incomplete_run_is_an_error_naming_it(runs_root):
    broken = runs_root / "fraction-1" / "full" / "s1"
    (broken / "summary.json").unlink()
    with pytest.raises(TunelabError, match="incomplete run") as info:
        collect([runs_root])
    assert str(broken) in str(info.value) and "--resume" in str(info.value) and "remove it" in str(info.value)


@pytest.mark.parametrize("make", [lambda p: p.mkdir(), lambda p: p.write_text("x"), lambda p: None])
def test_a_path_that_is_not_a_run_directory_is_an_error(tmp_path, make):
    path = tmp_path / "nothing"
    make(path)
    with pytest.raises(TunelabError, match="run director"):
        collect([path])


def test_runs_of_different_models_or_repeated_runs_are_refused(tmp_path):
    make_run(tmp_path / "a", "none", 0, 1.0, [0.5], 1.0)
    make_run(tmp_path / "b", "none", 0, 1.0, [0.6], 1.0, model="tiny-bert")
    with pytest.raises(TunelabError, match="different models"):
        collect([tmp_path])
    shutil.rmtree(tmp_path / "b")
    make_run(tmp_path / "c", "none", 0, 1.0, [0.6], 1.0)
    with pytest.raises(TunelabError, match="same run"):
        collect([tmp_path])


# ---------------------------------------------------------------- aggregation


def test_aggregation_matches_hand_computed_means_and_stds(runs_root):
    results = aggregate(collect([runs_root]))
    assert [(r.train_fraction, r.strategy) for r in results] == [
        (0.25, "none"),
        (0.25, "full"),
        (0.25, "scratch"),
        (1.0, "none"),
        (1.0, "full"),
        (1.0, "scratch"),
    ]
    full = by_key(results)[1.0, "full"]
    assert full.n_runs == 2 and full.score_mean == pytest.approx(0.85)
    assert full.score_std == pytest.approx(math.sqrt(((0.80 - 0.85) ** 2 + (0.90 - 0.85) ** 2) / 1))
    assert full.curve_mean == pytest.approx((0.625, 0.80, 0.85))
    assert full.train_seconds_mean == 42.0 and full.train_examples == 400
    assert full.seconds_per_epoch_mean == pytest.approx((40 / 3 + 44 / 3) / 2)
    assert full.peak_memory_mb_max == 610.0 and full.checkpoint_bytes_mean == 400_050
    assert (full.trainable_params, full.total_params, full.trainable_percent) == (100_000, 100_000, 100.0)
    none = by_key(results)[0.25, "none"]
    assert none.score_mean == pytest.approx(0.72) and none.score_std == pytest.approx(math.sqrt(0.0008))
    assert none.trainable_percent == pytest.approx(1.0) and none.train_examples == 100


def test_early_stopped_runs_are_padded_with_their_last_value(runs_root):
    scratch = by_key(aggregate(collect([runs_root])))[1.0, "scratch"]
    assert scratch.curve_mean == pytest.approx(
        (0.325, 0.45, 0.50)
    )  # seed 1's [0.35, 0.50] counts as [0.35, 0.50, 0.50]
    assert scratch.curve_std[2] == pytest.approx(0.0) and scratch.score_std == 0.0


def test_one_run_has_zero_std(tmp_path):
    result = aggregate(collect([make_run(tmp_path / "r", "none", 0, 1.0, [0.4, 0.5], 5.0)]))[0]
    assert (result.n_runs, result.score_std, result.curve_std) == (1, 0.0, (0.0, 0.0))
    assert result.best and result.cheapest_near_best and result.vs_best is None


def test_best_and_cheapest_near_best_are_marked_per_fraction(runs_root):
    results = by_key(aggregate(collect([runs_root])))
    assert [k for k, r in results.items() if r.best] == [(0.25, "none"), (1.0, "full")]
    # at 1.0, paired with full by seed: none differs by -0.02 and -0.08, mean -0.05, sd 0.0424, so the 95%
    # interval is -0.05 ± 12.706 * 0.0424 / sqrt(2) = [-0.431, +0.331]: it includes 0 but also a 43-point
    # loss, so two seeds cannot tell none from full: not within noise, and full stays the cheapest good choice
    none = results[1.0, "none"]
    assert none.vs_best.n == 2 and none.vs_best.verdict == "too few runs to tell" and not none.within_noise
    assert (none.vs_best.mean, none.vs_best.low, none.vs_best.high) == pytest.approx((-0.05, -0.4312, 0.3312), abs=1e-4)
    assert [k for k, r in results.items() if r.cheapest_near_best] == [(0.25, "none"), (1.0, "full")]
    wide = by_key(aggregate(collect([runs_root]), margin=0.5))[1.0, "none"]  # a 50-point margin accepts it
    assert wide.vs_best.verdict == "within noise" and wide.cheapest_near_best
    # at 0.25 full is below none by exactly 0.10 in both seeds: no spread, an interval of one point below 0
    assert results[0.25, "full"].vs_best.verdict == "below" and not results[0.25, "full"].within_noise


def test_cheapest_ties_go_to_fewer_trainable_parameters(tmp_path):
    make_run(tmp_path / "f", "full", 0, 1.0, [0.8], 10.0)
    make_run(tmp_path / "n", "none", 0, 1.0, [0.8], 10.0)
    results = by_key(aggregate(collect([tmp_path])))
    assert results[1.0, "none"].cheapest_near_best and not results[1.0, "full"].cheapest_near_best


# ---------------------------------------------------------------- the three benefits


@pytest.mark.parametrize(
    "curve, expected",
    [
        ([0.5], (0.5, None, 0.5)),
        ([0.2, 0.6], (0.2, 0.4, 0.6)),
        ([0.1, 0.4, 0.7, 0.9, 0.8], (0.1, 0.3, 0.9)),  # slope over the first three epochs only
        ([0.9, 0.6, 0.3], (0.9, -0.3, 0.9)),
    ],
)
def test_benefits_of_hand_made_curves(curve, expected):
    start, slope, asymptote = benefits(curve)
    assert start == pytest.approx(expected[0]) and asymptote == pytest.approx(expected[2])
    assert slope == (None if expected[1] is None else pytest.approx(expected[1]))


def test_benefits_need_an_epoch():
    with pytest.raises(ValueError):
        benefits([])


def test_benefit_table_compares_against_scratch_at_the_largest_fraction(runs_root):
    table = {b.strategy: b for b in benefit_table(aggregate(collect([runs_root])))}
    full, scratch = table["full"], table["scratch"]
    assert (full.start, full.slope, full.asymptote) == pytest.approx((0.625, 0.1125, 0.85))
    assert (scratch.start, scratch.slope, scratch.asymptote) == pytest.approx((0.325, 0.0875, 0.50))
    assert (full.start_gain, full.slope_gain, full.asymptote_gain) == pytest.approx((0.30, 0.025, 0.35))
    assert table["none"].slope_gain == pytest.approx((0.80 - 0.71) / 2 - 0.0875)
    assert (scratch.start_gain, scratch.slope_gain, scratch.asymptote_gain) == (None, None, None)


def test_without_scratch_the_differences_are_omitted(tmp_path):
    root = make_runs(tmp_path / "runs", {k: v for k, v in RUNS.items() if k[1] != "scratch"})
    records = collect([root])
    assert all(b.start_gain is None and b.asymptote_gain is None for b in benefit_table(aggregate(records)))
    write_report(records, tmp_path / "out", "t")
    md = (tmp_path / "out" / "results.md").read_text()
    assert "vs scratch" not in md and "Scratch was not run" in md


# ---------------------------------------------------------------- the files


def test_write_report_writes_every_file(runs_root, tmp_path):
    out = tmp_path / "report"
    page = write_report(collect([runs_root]), out, "tiny-cnn <on> flowers")
    assert page == out / "report.html"

    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert len(rows) == 6 and {r["status"] for r in rows} == {"finished"}
    full = next(r for r in rows if r["strategy"] == "full" and float(r["train_fraction"]) == 1.0)
    assert float(full["score_mean"]) == pytest.approx(0.85) and float(full["score_std"]) == pytest.approx(0.0707107)
    assert full["best"] == "True" and full["cheapest_near_best"] == "True" and full["n_runs"] == "2"
    assert [float(v) for v in full["curve_mean"].split()] == pytest.approx([0.625, 0.80, 0.85])
    assert full["run_scores"] == "0//0.8; 1//0.9" and full["vs_best_verdict"] == ""
    none = next(r for r in rows if r["strategy"] == "none" and float(r["train_fraction"]) == 1.0)
    assert none["vs_best_verdict"] == "too few runs to tell" and float(none["vs_best_mean"]) == pytest.approx(-0.05)

    md = (out / "results.md").read_text()
    full_row = (
        "| full ★◆ | 100% (400 examples) | 2 | 0.850 ± 0.071 | best | — | 100 | validation | ? | ? | 100k (100%) |"
    )
    assert full_row + " 42 s |" in md
    assert (
        "| none | 100% (400 examples) | 2 | 0.800 ± 0.028 | -0.050 [-0.431, +0.331]: too few runs to tell | — |" in md
    )
    assert "| none ★◆ | 25% (100 examples) |" in md
    assert "| full | 0.625 | +0.113 | 0.850 | +0.300 | +0.025 | +0.350 |" in md  # three benefits vs scratch

    pngs = {
        name: (out / name).read_bytes() for name in ("learning_curves.png", "cost_vs_metric.png", "data_fractions.png")
    }
    for name, png in pngs.items():
        with Image.open(io.BytesIO(png)) as image:
            image.verify()
        with Image.open(io.BytesIO(png)) as image:
            assert image.format == "PNG" and image.width > 0 and image.height > 0, name

    html = page.read_text()
    assert "http" not in html.lower() and "<script" not in html.lower() and "<link" not in html.lower()
    for name, png in pngs.items():
        assert f"data:image/png;base64,{base64.b64encode(png).decode()}" in html, name
    assert "tiny-cnn &lt;on&gt; flowers" in html and html.count("<tr") == 1 + 6 + 1 + 3
    assert (
        html.count('<tr class="best') == 2 and html.count('<tr class="split"') == 1
    )  # one line between the two fractions


def test_one_fraction_has_no_data_fractions_plot_and_drops_a_stale_one(tmp_path):
    root = make_runs(tmp_path / "runs", {k: v for k, v in RUNS.items() if k[0] == 1.0})
    out = tmp_path / "out"
    out.mkdir()
    (out / "data_fractions.png").write_bytes(b"old")
    write_report(collect([root]), out, "t")
    assert not (out / "data_fractions.png").exists()
    assert (out / "learning_curves.png").stat().st_size > 0 and (out / "cost_vs_metric.png").stat().st_size > 0


def test_the_conclusion_is_computed_from_the_numbers(runs_root, tmp_path):
    md = (write_report(collect([runs_root]), tmp_path / "a", "t").parent / "results.md").read_text()
    assert "full scored best: mean validation accuracy 0.850 ± 0.071 over 2 runs, 0.050 above the runner-up none" in md
    assert "on 100 validation examples (one example = 0.01): the gap is 5 examples." in md
    assert (
        "Too few runs to tell from full (the interval includes 0 but also losses larger than 0.01): none -0.050" in md
    )
    assert "No cheaper strategy is shown to be as good (within 0.01 of it)" in md
    md = (write_report(collect([runs_root]), tmp_path / "m", "t", margin=0.5).parent / "results.md").read_text()
    assert "none is the cheapest strategy within noise of the best: 0.800, 0.050 below full" in md
    assert "in 11 s of training instead of 42 s (3.8× less)" in md
    assert "started 0.300 higher after the first epoch of the mean validation curve (0.625 vs 0.325)" in md
    assert "ended 0.350 higher in mean validation accuracy (0.850 vs 0.500)" in md
    assert "Transfer helped most at 100 training examples (25% of the data), where none beat scratch by 0.400" in md

    # the same layout with scratch winning everywhere: the text must follow the data
    flipped = {(f, s, seed): ([1.0 - c for c in curve], t) for (f, s, seed), (curve, t) in RUNS.items()}
    root = make_runs(tmp_path / "flipped", flipped)
    md = (write_report(collect([root]), tmp_path / "b", "t").parent / "results.md").read_text()
    assert "scratch scored best" in md and "Scratch matched or beat every transferring strategy" in md
    assert "Transfer helped most" not in md


def test_single_runs_say_the_ranking_is_not_decidable(tmp_path):
    make_run(tmp_path / "a", "none", 0, 1.0, [0.5, 0.7], 5.0)
    make_run(tmp_path / "b", "full", 0, 1.0, [0.6, 0.8], 9.0)
    md = (write_report(collect([tmp_path]), tmp_path / "out", "t").parent / "results.md").read_text()
    assert "One run each: no spread, not decidable whether full is better than none" in md
    assert "the cheapest good choice is not decidable either; full took 9 s" in md
    assert "| none | 100% (400 examples) | 1 | 0.700 (n=1) | -0.100, 1 pair: not decidable |" in md


def test_report_from_runs_titles_the_report_with_model_and_data(runs_root, tmp_path):
    page = report_from_runs([runs_root], tmp_path / "cmp")
    assert page == tmp_path / "cmp" / "report.html"
    assert "<title>tiny-cnn on flowers: transfer strategies compared</title>" in page.read_text()
    assert (tmp_path / "cmp" / "results.md").read_text().startswith("# tiny-cnn on flowers")

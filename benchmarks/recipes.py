"""The fine-tuning recipes against `full` and `none`: five datasets and one distribution-shift pair (issue 18).

Every dataset is an ordinary `tunelab compare` of RECIPES, 3 seeds, equal conditions (one augmentation policy,
the same epochs and batch for every strategy; each run's best epoch chosen on the validation split compare
holds out of the training data) and scored once on a test set no run has seen. The datasets are cases of the
advisor's suite (`advice_cases.py`: data, sizes, epochs, image sizes and test sets are written the same way):

- mnv2-hymenoptera-100: MobileNetV2 on 100 ants vs bees photos, an ImageNet subset (close to the source);
- mnv2-digits-400 and mnv2-fashion-mnist-400: MobileNetV2 on 8x8 digit scans and 28x28 product images,
  upsampled to 96 px (far from ImageNet);
- minilm-sst2-1000: MiniLM-L6 on movie-review sentiment; minilm-semeval-1000: MiniLM-L6 on SemEval-2010
  Task 8 relations as 10-class sentence classification.

The shift pair, `conll-wnut`: MiniLM-L6 tagging named entities, trained on 1,000 CoNLL-2003 news sentences
(validation, which chooses the epoch, is held out of them: the model is selected on the source domain) and
scored on WNUT-17's 1,287 test tweets with WNUT's types mapped to CoNLL's (as `domain_shift.py` writes it).
Its table gives both: the source validation F1 (in distribution) and the WNUT test F1 (out of distribution).

The table says per dataset which recipe scored best and, for each recipe, its gap to `full` (mean of the
per-seed differences, seeds paired) and whether that gap is larger than the seed spread (the larger of the
two recipes' sample standard deviations). WiSE-FT's mixing weight, chosen on validation per run, is listed.
Wall times are not in the table: the runs shared the machine with other work, at different loads (each
compare's report.html under --out has them, for what they are worth).

Run: python benchmarks/recipes.py [--out DIR] [--datasets a,b] [--quick]
Writes benchmarks/results/recipes.md and the table between the recipes markers in benchmarks/README.md (not
with --quick). Finished runs are skipped when it is run again; --tables-only rebuilds the tables from them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from advice_cases import CASES, prepare
from advice_ground_truth import run_compare, run_dir
from bench_common import write_table
from domain_shift import conll_wnut_pair

HERE = Path(__file__).resolve().parent
RECIPES = ("none", "full", "lpft", "gradual", "bitfit", "full:l2sp=0.01", "wiseft", "lora")
"""L2-SP's strength 0.01 is the pull on the pretrained weights of Li et al.'s image experiments' order."""
SEEDS = 3
DATASETS = (
    "mnv2-digits-400",
    "mnv2-fashion-mnist-400",
    "mnv2-hymenoptera-100",
    "minilm-sst2-1000",
    "minilm-semeval-1000",
    "conll-wnut",
)


@dataclass(frozen=True)
class Setup:
    """What one dataset's compare trains on and is scored on."""

    name: str
    model: str
    train: Path
    test: Path
    epochs: int
    image_size: int | None
    note: str


def setup(name: str, out: Path, quick: bool) -> Setup:
    """Write (or find) the dataset's training and test files under out/data."""
    if name == "conll-wnut":
        sizes = SimpleNamespace(quick=quick, source_sentences=1000, target_sentences=2, test_sentences=None)
        folder = out / "data" / "conll-wnut"
        folder.mkdir(parents=True, exist_ok=True)
        files = conll_wnut_pair(folder, sizes)
        note = "CoNLL-2003 news -> WNUT-17 tweets (NER, entity F1)"
        return Setup(name, "minilm-l6", files["source"], files["target-test"], 1 if quick else 3, None, note)
    case = next(c for c in CASES if c.name == name)
    data = prepare(case, out / "data")
    note = f"{case.dataset}, {case.train_size} training examples"
    return Setup(name, case.model, data.train, data.test, 1 if quick else case.epochs, case.image_size, note)


def compare(s: Setup, out: Path, seeds: int) -> None:
    run_compare(s.model, s.train, s.test, RECIPES, s.epochs, seeds, out / s.name / "compare", s.image_size)


def summaries(s: Setup, out: Path, seeds: int) -> dict[str, list[dict]]:
    """Each recipe's finished runs' summary.json, by seed (a failed or missing run is left out)."""
    found = {}
    for recipe in RECIPES:
        for seed in range(seeds):
            path = run_dir(out / s.name, recipe, seed) / "summary.json"
            if path.is_file():
                found.setdefault(recipe, []).append(json.loads(path.read_text()) | {"seed": seed})
    return found


def sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass(frozen=True)
class Gap:
    """A recipe next to `full` on one dataset: mean of the seed-paired differences, and what it amounts to."""

    value: float
    verdict: str
    """'better' / 'worse' (the gap exceeds the seed spread), 'within spread', or 'one seed' (no spread)."""

    @property
    def mark(self) -> str:
        return {"better": " ▲", "worse": " ▼"}.get(self.verdict, "")


def gaps(runs: dict[str, list[dict]]) -> dict[str, Gap]:
    """Each recipe's gap to `full` (seeds paired); the seed spread is the larger of the two sample stds."""
    full = {x["seed"]: x["score"] for x in runs.get("full", [])}
    out = {}
    for recipe, vs in runs.items():
        paired = [x["score"] - full[x["seed"]] for x in vs if x["seed"] in full]
        if recipe == "full" or not paired:
            continue
        value = statistics.fmean(paired)
        if min(len(paired), len(full)) < 2:
            out[recipe] = Gap(value, "one seed")
            continue
        spread = max(sd([x["score"] for x in vs]), sd(list(full.values())))
        out[recipe] = Gap(value, ("better" if value > 0 else "worse") if abs(value) > spread else "within spread")
    return out


def table(s: Setup, runs: dict[str, list[dict]]) -> list[str]:
    """One dataset's Markdown table: a row per recipe, best first."""
    score = {r: [x["score"] for x in v] for r, v in runs.items()}
    mean = {r: statistics.fmean(v) for r, v in score.items()}
    gap = gaps(runs)
    shift = s.name == "conll-wnut"
    head = "| recipe | test score, mean ± std (n) | gap to `full` (paired) | larger than seed spread? |"
    head += " source val score |" if shift else ""
    head += " trainable params | note |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in sorted(mean, key=mean.get, reverse=True):
        vs, g = runs[r], gap.get(r)
        mixes = [x["weight_mix"]["alpha"] for x in vs if x.get("weight_mix")]
        note = "alpha " + ", ".join(f"{a:g}" for a in mixes) if mixes else ""
        row = f"| `{r}` | {mean[r]:.3f} ± {sd(score[r]):.3f} ({len(vs)}) | "
        row += f"{g.value:+.3f} | {g.verdict} |" if g else " | |"
        if shift:
            row += f" {statistics.fmean(x['val_score'] for x in vs):.3f} |"
        row += f" {vs[0]['trainable_params']:,} | {note} |"
        lines.append(row)
    return lines


def overview(results: dict[str, dict[str, list[dict]]]) -> list[str]:
    """Every recipe's gap to `full` on every dataset (▲/▼: larger than the seed spread), and each dataset's best."""
    names = list(results)
    lines = ["| recipe | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    per = {name: gaps(runs) for name, runs in results.items()}
    for recipe in RECIPES:
        cells = []
        for name in names:
            runs = results[name]
            if recipe == "full" and runs.get("full"):
                cells.append(f"{statistics.fmean(x['score'] for x in runs['full']):.3f}")
            elif recipe in per[name]:
                g = per[name][recipe]
                cells.append(f"{g.value:+.3f}{g.mark}")
            else:
                cells.append("")
        lines.append(f"| `{recipe}` | " + " | ".join(cells) + " |")
    best = []
    for name in names:
        means = {r: statistics.fmean(x["score"] for x in v) for r, v in results[name].items()}
        best.append(f"`{max(means, key=means.get)}`" if means else "")
    lines.append("| **best** | " + " | ".join(best) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/recipes", help="working folder (data, runs); resumable")
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, of: {', '.join(DATASETS)}")
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--quick", action="store_true", help="1 epoch, 1 seed, little NER data; writes no table")
    parser.add_argument("--tables-only", action="store_true", help="train nothing: the tables from finished runs")
    args = parser.parse_args()
    names = [n for n in args.datasets.split(",") if n]
    unknown = set(names) - set(DATASETS)
    if unknown:
        parser.error(f"unknown datasets: {', '.join(sorted(unknown))}")
    out, seeds = Path(args.out), 1 if args.quick else args.seeds
    sections, results = [], {}
    for name in names:
        s = setup(name, out, args.quick)
        started = time.perf_counter()
        if not args.tables_only:
            compare(s, out, seeds)
        results[name] = runs = summaries(s, out, seeds)
        print(f"{name}: {sum(map(len, runs.values()))} runs ({time.perf_counter() - started:.0f} s)", flush=True)
        sections += [f"### {name}: {s.note}, {s.epochs} epochs", "", *table(s, runs), ""]
    head = [
        "Gap to `full` (test score, seeds paired; ▲/▼ larger than the seed spread); the `full` row is its score.",
        "",
    ]
    write_table("recipes", "\n".join([*head, *overview(results), "", *sections]), args.quick)


if __name__ == "__main__":
    main()

"""Inference throughput: `tunelab predict` and `tunelab eval` against a `transformers` `pipeline` on the same weights.

Setup, once per driver run and in its own process: train tunelab `full` on MiniLM-L6 for 1 epoch on the SST-2
subset the text tables use (1000 training sentences shuffled with seed 0, the first 400 dev sentences; batch
16, seed 0), or take a finished text-classification run given with `--run`. The run's best weights are then
copied, tensor by tensor, into a `transformers` model directory: `tunelab export` writes ONNX only, and
`pipeline` wants a `transformers` model, so the weights go into hf_peer.py's
`MeanPoolBertForSequenceClassification` (BERT + all-MiniLM-L6-v2's mean pooling + the run's linear head;
transformers has no mean-pooling sequence classifier), saved with `save_pretrained` beside the tokenizer,
labels named by the run's classes. A LoRA run is merged first; a run with adapters does not fit a plain BERT
and is refused. The setup checks the copy: the largest |logit difference| between the two models on 64 dev
sentences is printed and goes in the table.

Sides, each repetition in a fresh process, in the order A B C, C B A, ...; all 872 SST-2 dev sentences;
batch 64 on every side (the default of `tunelab predict` and `tunelab eval`, whose CLI has no other for
predict); max_length 128 (no dev sentence is longer); 2 threads:

- `tunelab-predict`: `tunelab.runs.evaluate.predict(run, sentences, k=1, batch_size=64)`, the function the
  `tunelab predict` command calls;
- `tunelab-eval`: `tunelab.runs.evaluate.evaluate(run, dev.tsv, batch_size=64)`, what `tunelab eval` calls:
  the same pass plus reading the labelled file and building the report;
- `pipeline`: `pipeline("text-classification", model=<the converted model>, tokenizer=<its tokenizer>,
  device="cpu")`, called as `clf(sentences, batch_size=64, truncation=True, max_length=128)`.

Each side measures, after `import torch` (the same on every side):
- `cold_s`: importing tunelab or transformers, loading the model and predicting once: what one
  `tunelab predict` command or one pipeline script costs apart from the interpreter's start. The labels of
  this call are the ones compared. Peak memory is taken over this part.
- then, in the same process, `load_s`: the model load alone, warm (tunelab: `load_run`, which predict and eval
  do first on every call; pipeline: building the pipeline again), and `infer_s`: the inference alone
  (pipeline: a second call; tunelab: a second predict or eval call minus `load_s`, because tunelab's calls
  always load the run first). Sentences per second = 872 / `infer_s`; cold sentences per second = 872 / `cold_s`.

Where the sides necessarily differ: tunelab orders sentences by token count before batching (less padding;
the answers go back in input order), the pipeline batches in input order and pads each batch to its longest
sentence; a tunelab call loads the run every time, a pipeline is built once and called many times (which is
why the load is timed apart). Agreement: per repetition, the fraction of the 872 sentences on which
tunelab-predict and the pipeline give the same label, and every side's accuracy against the dev labels.

Run: python benchmarks/predict_peers.py [--repetitions 3] [--run RUN_DIR] [--quick]
Writes benchmarks/results/predict_peers.md (and the README section between `<!-- predict_peers:begin -->`
and `:end -->` once those markers exist).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench_common import (
    DATASETS,
    driver_parser,
    emit,
    interleaved,
    load_note,
    machine,
    median,
    paired_ratio,
    run_worker,
    set_threads,
    spread,
    text_subset,
    write_table,
)

SIDES = ("tunelab-predict", "pipeline", "tunelab-eval")
MAX_LENGTH = 128
QUICK_SENTENCES = 32
"""Dev sentences predicted with --quick (the full run predicts all 872)."""


def read_tsv(path: Path) -> tuple[list[str], list[str]]:
    """Texts and labels of a `sentence<TAB>label` file with a header, split on the tab as tunelab splits TSV."""
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    return [text for text, _ in rows], [label for _, label in rows]


# --- setup: a run and its transformers copy ------------------------------------------------------------------


def train_run(folder: Path, quick: bool) -> Path:
    """A 1-epoch tunelab `full` run on the SST-2 subset (16/8 sentences with --quick)."""
    from tunelab.runs.loop import train
    from tunelab.settings import TrainConfig

    train_tsv, dev_tsv = text_subset(folder / "sst2", *((16, 8) if quick else (1000, 400)))
    out = folder / "run"
    train(
        TrainConfig(
            model="minilm-l6",
            strategy="full",
            data=str(train_tsv),
            val_data=str(dev_tsv),
            out=str(out),
            epochs=1,
            batch_size=16,
            seed=0,
        )
    )
    return out


def bert_key(key: str) -> str:
    """A tunelab MiniLM state-dict key -> the `MeanPoolBertForSequenceClassification` key of the same tensor.

    tunelab's blocks are [embeddings, layer 0, ..., layer 5] and its head is (mean pool, dropout, linear).
    """
    parts = key.split(".")
    if parts[0] == "blocks" and parts[1] == "0":
        return "bert." + ".".join(parts[2:])
    if parts[0] == "blocks":
        return f"bert.encoder.layer.{int(parts[1]) - 1}." + ".".join(parts[3:])  # blocks.i.layer.<rest>
    if parts[0] == "head" and parts[1] == "2":
        return "classifier." + ".".join(parts[2:])
    raise ValueError(f"{key}: no place for it in a plain BERT classifier (adapters?)")


def convert(run: Path, out: Path) -> float:
    """Write the run's best model as a transformers model directory; returns the largest |logit difference|."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from hf_peer import mean_pool_sequence_classifier
    from tunelab.models.packaged import MINILM
    from tunelab.runs.trained import load_run
    from tunelab.strategies.layers import merge_lora

    loaded = load_run(run)
    if loaded.task != "text-classification" or loaded.config.model != "minilm-l6":
        raise SystemExit(
            f"{run}: a minilm-l6 text-classification run is needed, not {loaded.config.model} {loaded.task}"
        )
    ours = loaded.plan.backbone.model.eval()
    merge_lora(ours)
    folder = MINILM.verified_path().parent
    classes = list(loaded.classes)
    config = AutoConfig.from_pretrained(
        folder,
        num_labels=len(classes),
        id2label=dict(enumerate(classes)),
        label2id={c: i for i, c in enumerate(classes)},
    )
    theirs = mean_pool_sequence_classifier()(config).eval()
    theirs.load_state_dict({bert_key(k): v for k, v in ours.state_dict().items()}, strict=True)
    theirs.save_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.save_pretrained(out)
    sentences = read_tsv(DATASETS / "sst2" / "dev.tsv")[0][:64]
    batch = dict(tokenizer(sentences, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"))
    with torch.no_grad():
        return float((ours(batch) - theirs(**batch).logits).abs().max())


# --- the sides -----------------------------------------------------------------------------------------------


def tunelab_side(side: str, run: str, sentences: list[str], dev: Path, batch: int) -> tuple[dict, list[str] | None]:
    """Cold call, then warm load and call; labels of the cold call (predict only: eval returns a report)."""
    from tunelab.runs.memory import PeakMemory

    with PeakMemory() as memory:
        started = time.perf_counter()
        from tunelab.runs.evaluate import evaluate, predict

        if side == "tunelab-predict":
            answers = predict(run, sentences, k=1, batch_size=batch)
            labels, accuracy = [a.labels[0][0] for a in answers], None
        else:
            report = evaluate(run, dev, batch_size=batch)
            labels, accuracy = None, report.accuracy
        cold = time.perf_counter() - started
    from tunelab.runs.trained import load_run

    started = time.perf_counter()
    load_run(run)
    load = time.perf_counter() - started
    started = time.perf_counter()
    if side == "tunelab-predict":
        predict(run, sentences, k=1, batch_size=batch)
    else:
        evaluate(run, dev, batch_size=batch)
    infer = time.perf_counter() - started - load
    return {"cold_s": cold, "load_s": load, "infer_s": infer, "peak_mb": memory.mb, "eval_accuracy": accuracy}, labels


def pipeline_side(model_dir: str, sentences: list[str], batch: int) -> tuple[dict, list[str]]:
    """Cold: imports, build, call; then a second build (warm load) and a second call (inference alone)."""
    from tunelab.runs.memory import PeakMemory

    def build():
        from transformers import AutoTokenizer, pipeline

        from hf_peer import mean_pool_sequence_classifier

        model = mean_pool_sequence_classifier().from_pretrained(model_dir)
        return pipeline(
            "text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(model_dir), device="cpu"
        )

    def call(classifier) -> list[str]:
        answers = classifier(sentences, batch_size=batch, truncation=True, max_length=MAX_LENGTH)
        return [a["label"] for a in answers]

    with PeakMemory() as memory:
        started = time.perf_counter()
        labels = call(build())
        cold = time.perf_counter() - started
    started = time.perf_counter()
    classifier = build()
    load = time.perf_counter() - started
    started = time.perf_counter()
    call(classifier)
    infer = time.perf_counter() - started
    return {"cold_s": cold, "load_s": load, "infer_s": infer, "peak_mb": memory.mb, "eval_accuracy": None}, labels


def worker(args) -> None:
    set_threads(args.threads)  # imports torch: on every side before the clock starts
    dev = Path(args.val_data)
    sentences, gold = read_tsv(dev)
    if args.side == "setup":
        folder = Path(args.data)
        run = Path(args.run) if args.run else train_run(folder, args.quick)
        difference = convert(run, folder / "transformers-model")
        emit({"run": str(run), "model_dir": str(folder / "transformers-model"), "max_logit_diff": difference})
        return
    if args.side == "pipeline":
        result, labels = pipeline_side(args.model_dir, sentences, args.batch_size)
    else:
        result, labels = tunelab_side(args.side, args.run, sentences, dev, args.batch_size)
    if labels is not None:
        Path(args.labels_out).write_text(json.dumps(labels))
    accuracy = result.pop("eval_accuracy")
    if accuracy is None:
        accuracy = sum(p == g for p, g in zip(labels, gold)) / len(gold)
    n = len(sentences)
    emit(
        {**result, "accuracy": accuracy, "sents_per_s": n / result["infer_s"], "cold_sents_per_s": n / result["cold_s"]}
    )


def agreement(folder: Path, repetitions: int) -> list[float]:
    """Per repetition: the fraction of sentences on which tunelab-predict and the pipeline gave the same label."""
    fractions = []
    for rep in range(repetitions):
        ours, theirs = (json.loads((folder / f"labels-{side}-{rep}.json").read_text()) for side in SIDES[:2])
        fractions.append(sum(a == b for a, b in zip(ours, theirs)) / len(ours))
    return fractions


def main() -> None:
    parser = driver_parser(
        __doc__,
        (*SIDES, "setup"),
        repetitions=3,
        batch_size=64,
        worker_fields=("--data", "--val-data", "--model-dir", "--labels-out"),
    )
    parser.add_argument("--run", help="a finished minilm-l6 text-classification run to use instead of training one")
    args = parser.parse_args()
    if args.side:
        return worker(args)
    if args.from_log:
        raise SystemExit("--from-log is not supported here: the agreement needs the label files of every repetition")

    reps = 1 if args.quick else args.repetitions
    folder = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    header, *rows = (DATASETS / "sst2" / "dev.tsv").read_text().splitlines(keepends=True)
    rows = rows[:QUICK_SENTENCES] if args.quick else rows
    dev = folder / "dev.tsv"
    dev.write_text(header + "".join(rows))
    threads = ["--threads", str(args.threads)]
    setup_fields = ["--data", str(folder), "--val-data", str(dev), *threads]
    setup_fields += ["--run", args.run] if args.run else []
    setup = run_worker(__file__, "setup", setup_fields + (["--quick"] if args.quick else []), "once ")
    load_before = os.getloadavg()[0]

    def one(side: str, rep: int) -> dict:
        fields = ["--run", setup["run"], "--model-dir", setup["model_dir"], "--val-data", str(dev)]
        fields += ["--labels-out", str(folder / f"labels-{side}-{rep}.json"), "--batch-size", str(args.batch_size)]
        return run_worker(__file__, side, [*fields, *threads])

    results = interleaved(SIDES, reps, one)
    load_after = os.getloadavg()[0]
    agreed = agreement(folder, reps)
    pipe = results["pipeline"]

    def row(side: str) -> str:
        r = results[side]
        versus = "-" if side == "pipeline" else paired_ratio(r, pipe, "sents_per_s")
        cold = "-" if side == "pipeline" else paired_ratio(r, pipe, "cold_s")
        return (
            f"| {side} | {median(r, 'sents_per_s'):.0f} | {versus} | {median(r, 'infer_s'):.2f} | "
            f"{median(r, 'load_s'):.2f} | {median(r, 'cold_s'):.1f} | {cold} | {median(r, 'cold_sents_per_s'):.0f} | "
            f"{median(r, 'peak_mb'):.0f} | {median(r, 'accuracy'):.3f} ({spread(r, 'accuracy')}) | {len(r)} |"
        )

    trained = (
        f"the given run {args.run}"
        if args.run
        else f"a tunelab `full` run (1 epoch on {16 if args.quick else 1000} shuffled SST-2 training sentences, seed 0)"
    )
    table = [
        f"MiniLM-L6: {trained}, and its weights copied into a transformers model for the pipeline (largest |logit "
        f"difference| between the two {setup['max_logit_diff']:.1e} on 64 dev sentences). {len(rows)} SST-2 dev "
        f"sentences, batch {args.batch_size} on every side, max_length {MAX_LENGTH}; medians of {reps} interleaved "
        f"repetitions, each side in a fresh process. Inference: warm, model already loaded; cold: imports, load and "
        f"one call after `import torch`. Machine: {machine(args.threads)}; {load_note(load_before, load_after)}.",
        "",
        "| side | sentences/s (inference) | paired ratio to pipeline, median (min-max) | inference s | load s (warm) "
        "| cold s | paired cold time ratio to pipeline | cold sentences/s | peak MB (cold) | accuracy (min-max) | reps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(row(side) for side in SIDES),
        "",
        f"Same label from tunelab-predict and the pipeline: {statistics.median(agreed):.4f} of the sentences (median; "
        f"per repetition {', '.join(f'{a:.4f}' for a in agreed)}).",
    ]
    write_table("predict_peers", "\n".join(table), args.quick, add_section=False)


if __name__ == "__main__":
    main()

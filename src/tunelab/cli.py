"""The `tunelab` command: each subcommand parses its flags and calls one library function.

User mistakes (TunelabError) print as one line and exit with code 2; `--debug` shows the traceback. SIGTERM
stops a command the way Ctrl-C does (a run keeps its last epoch for --resume) and exits with 143.

Start-up: `tunelab --help`, `tunelab <command> --help`, `tunelab --version` and flag errors answer in well under
a second, because building the parser reads only torch-free registries and settings (the strategy registry,
the task registry, the settings dataclasses). Each command function imports its implementation when it runs,
so --help never loads torch; `benchmarks/cli_startup.py` measures it and `tests/test_cli.py` checks it.

May import: every tunelab subsystem (the top layer); at module level only the torch-free ones.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import threading
from dataclasses import asdict, fields
from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.fileio import read_text
from tunelab.settings import (
    AdviseConfig,
    CompareConfig,
    DataSettings,
    LoopSettings,
    LrFindConfig,
    PredictSettings,
    TrainConfig,
    add_arguments,
    field_docs,
    resolve,
    validate,
)
from tunelab.settings.compare import COMPARE_NOTES
from tunelab.settings.lr_find import LR_FIND_NOTES
from tunelab.strategies import REGISTRY
from tunelab.tasks import task_names

TRUST_HELP = "let a Hugging Face model run the Python code it ships (off by default; read that code first)"


def strategy_help(default: str) -> str:
    """--strategy's help, from the registry: every registered strategy with its positional value and summary.

    Built when the parser is, so a strategy registered by a plugin or a test shows up too.
    """
    listed = "; ".join(
        f"{key}{f':<{cls.positional}>' if cls.positional else ''} = {cls.summary}" for key, cls in REGISTRY.items()
    )
    scaled = {key: f.default for key, cls in REGISTRY.items() for f in fields(cls) if f.name == "lr_mult"}
    scales = " and ".join(f"{key} at {mult:g}x" for key, mult in scaled.items())
    text = (
        f"transfer strategy: {listed}. Extra fields as :name=value, e.g. full:decay=0.8 (default: {default}). "
        f"--lr is the new head's rate; pretrained weights train at a scale of it ({scales}: :lr_mult=1 for one "
        "lr everywhere); each run prints every group's learning rate first"
    )
    return text.replace("%", "%%")  # argparse formats help with %


def add_strategy_argument(parser: argparse.ArgumentParser, cls: type) -> None:
    """--strategy for a settings class whose `strategy` field add_arguments() skipped.

    The settings layer sits below the strategies and cannot list them, so the CLI writes this flag's help.
    Like every settings flag it defaults to "not given", so a --config file's strategy still applies.
    """
    default = next(f.default for f in fields(cls) if f.name == "strategy")
    parser.add_argument("--strategy", default=argparse.SUPPRESS, metavar="STRATEGY", help=strategy_help(default))


BOUNDED_FLAGS = {
    "batch_size": LoopSettings,
    "max_length": DataSettings,
    "max_image_pixels": DataSettings,
    "top_k": PredictSettings,
}
"""The plain flags of eval, predict and embed, and the settings group whose field of the same name bounds
them: one set of limits for a flag whichever command takes it (`eval --batch-size 0` is refused as
`train --batch-size 0` is, with the same message)."""


def check_flags(args: argparse.Namespace) -> None:
    """Refuse a plain flag outside its setting's limits (see BOUNDED_FLAGS); flags left unset are not checked."""
    for name, group in BOUNDED_FLAGS.items():
        value = getattr(args, name, None)
        if value is not None:
            validate(group, {name: value}, "command line")


def pixels_help(default: str) -> str:
    """--max-image-pixels' help for commands that take it as a plain flag: the setting's own doc."""
    return f"{field_docs(DataSettings)['max_image_pixels']} (default: {default})"


def setting_choices() -> dict[str, tuple[str, ...]]:
    """Allowed values of settings whose choices live in registries above the settings layer: the task names."""
    return {"task": ("auto", *task_names())}


class _Version(argparse.Action):
    """--version: the installed package's version, looked up only when asked for (the lookup costs ~30 ms)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import version

        print(f"tunelab {version('tunelab')}")
        parser.exit()


def cmd_models(args: argparse.Namespace) -> None:
    from tunelab.models.zoo import list_models

    rows = list_models()
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return
    table = [("name", "family", "trained on", "params", "weights from")]
    for r in rows:
        params = f"{r.params / 1e6:.2f}M" if r.params >= 1e5 else f"{r.params:,}" if r.available else "-"
        table.append((r.name, r.family, r.task, params, r.source + ("" if r.available else " (not installed)")))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.rjust(w) if i == 3 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    print("also: timm:<name>, hf:<model id> (from their hubs), a local model directory, or a run directory")


def cmd_inspect(args: argparse.Namespace) -> None:
    from tunelab.runs.prepare import prepare
    from tunelab.strategies.describe import format_plan, plan_dict

    plan = prepare(args.model, args.strategy, args.num_classes, args.trust_remote_code)
    print(json.dumps(plan_dict(plan), indent=2) if args.json else format_plan(plan))


def cmd_train(args: argparse.Namespace) -> None:
    from tunelab.runs.loop import train

    config = resolve(TrainConfig, args, choices=setting_choices())
    try:
        train(config)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see main)
        out = Path(config.out)
        if (out / "summary.json").is_file():
            raise TunelabError(f"interrupted after the run had finished; it is complete in {out}") from None
        if not (out / "checkpoint" / "latest").is_file():
            raise TunelabError("interrupted before the first epoch completed; nothing was saved") from None
        raise TunelabError(
            f"interrupted; the last completed epoch is saved in {config.out}: add --resume to continue"
        ) from None


def cmd_lr_find(args: argparse.Namespace) -> None:
    from tunelab.runs.lr_find import lr_find

    result = lr_find(resolve(LrFindConfig, args, choices=setting_choices()))
    for line in result.report():
        print(line, file=sys.stderr)
    print(f"suggested --lr {result.suggested_lr:.2g}")


def cmd_eval(args: argparse.Namespace) -> None:
    from tunelab.runs.evaluate import evaluate

    check_flags(args)
    report = evaluate(
        args.run,
        args.data,
        batch_size=args.batch_size,
        trust_remote_code=args.trust_remote_code,
        max_image_pixels=args.max_image_pixels,
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())


def cmd_predict(args: argparse.Namespace) -> None:
    from tunelab.runs.evaluate import predict

    check_flags(args)
    inputs = list(args.inputs)
    if args.file:
        inputs += [line for line in read_text(args.file, "input file").splitlines() if line.strip()]
    if not inputs:
        raise TunelabError("nothing to predict: give image files or folders, or text lines, or --file")
    predictions = predict(
        args.run,
        inputs,
        k=args.top_k,
        trust_remote_code=args.trust_remote_code,
        max_image_pixels=args.max_image_pixels,
    )
    if args.json:
        print(json.dumps([p.to_dict() for p in predictions], indent=2))
        return
    for p in predictions:
        print(p.format())


def cmd_compare(args: argparse.Namespace) -> None:
    from tunelab.comparison.grid import compare

    config = resolve(CompareConfig, args, choices=setting_choices())
    try:
        report = compare(config)
    except KeyboardInterrupt:
        raise TunelabError(
            f"interrupted; run the same command again to skip finished runs and resume the rest in {config.out}"
        ) from None
    print(read_text(report.with_name("results.md"), "results table"), end="")  # the table on stdout, as written
    print(f"report: {report}", file=sys.stderr)


def cmd_advise(args: argparse.Namespace) -> None:
    from tunelab.advice.command import run_advise

    result = run_advise(resolve(AdviseConfig, args, choices=setting_choices()))
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "text"}, indent=2))
        return
    print(result["text"])
    if "verification" in result:
        print(result["verification"]["summary"] + f" (report: {result['verification']['report']})")


def cmd_report(args: argparse.Namespace) -> None:
    from tunelab.comparison.report import report_from_runs

    if not (args.margin >= 0 and math.isfinite(args.margin)):
        raise TunelabError(f"--margin must be a finite number of at least 0; got {args.margin}")
    print(report_from_runs([Path(p) for p in args.runs], Path(args.out), margin=args.margin))


def cmd_embed(args: argparse.Namespace) -> None:
    from tunelab.embedding import embed

    check_flags(args)
    result = embed(
        args.model,
        args.data,
        block=args.block,
        batch_size=args.batch_size,
        max_length=args.max_length,
        text_column=args.text_column,
        label_column=args.label_column,
        max_image_pixels=args.max_image_pixels,
    )
    path = result.save(args.out)
    n, d = result.features.shape
    print(f"{n} examples x {d} features from {result.model} block {result.block} ({result.block_name}) -> {path}")


def cmd_export(args: argparse.Namespace) -> None:
    from tunelab.onnx_export import export

    print(export(args.run, args.out, args.format))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunelab",
        description="Transfer learning: put a pretrained network on your task with a chosen strategy.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    parser.add_argument("--version", action=_Version, help="print the installed tunelab version and exit")
    choices = setting_choices()
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list the models you can use by name", description="List the model zoo.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser(
        "inspect",
        help="show what a strategy trains on a model",
        description="Print the transfer plan: per block whether it trains, its lr scale, parameter counts and "
        "inserted modules, then the trainable-parameter summary.",
    )
    p.add_argument(
        "--model",
        required=True,
        help="zoo name (see `tunelab models`), timm:<name>, hf:<id>, a model directory or a run directory",
    )
    p.add_argument("--strategy", default="full", help=strategy_help("full"))
    p.add_argument("--num-classes", type=int, required=True, help="number of target classes (at least 2)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "train",
        help="fine-tune a model on your data with a strategy",
        description="Train MODEL on DATA with STRATEGY and save a run directory (config.yaml, metrics.jsonl, "
        "model.safetensors, summary.json). Every setting can also come from --config FILE.yaml; flags override it. "
        "Interrupted runs continue with --resume. Runs unchanged under `accelerate launch -m tunelab train ...`.",
    )
    add_strategy_argument(p, TrainConfig)
    add_arguments(p, TrainConfig, skip=("strategy",), choices=choices)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "lr-find",
        help="lr range test: find a learning rate for train before a long run",
        description="The lr range test (Smith 2017; fastai's lr_find): train MODEL on DATA with STRATEGY exactly as "
        "`tunelab train` would (the same flags work) for --steps optimizer steps while the head's learning rate "
        "grows geometrically from --start-lr to --end-lr, every parameter group at its strategy's lr scale (full: "
        "the backbone at 0.1x); record the loss and its smoothed average and stop once that exceeds 4x its best. "
        "Prints two readings (the steepest descent of the smoothed loss, and one decade below its minimum) and "
        "suggests the second: the last line on stdout is `suggested --lr X`, the head lr for train. The suggestion "
        "is a starting point, not an answer: check it with a short run. Writes lr_find.png (loss against lr, "
        "log scale, suggestions marked), lr_find.csv (step, lr, loss, smoothed) and lr_find.json into --out; "
        "no run or model folder is touched and the trained weights are thrown away.",
    )
    add_strategy_argument(p, LrFindConfig)
    add_arguments(p, LrFindConfig, skip=("strategy",), choices=choices, notes=LR_FIND_NOTES)
    p.set_defaults(func=cmd_lr_find)

    p = sub.add_parser(
        "eval",
        help="score a finished run on labelled data",
        description="Accuracy, macro-F1, per-class "
        "precision/recall/F1 and the confusion matrix of a run's best model on labelled data.",
    )
    p.add_argument("--run", required=True, help="run directory written by `tunelab train`")
    p.add_argument(
        "--data",
        required=True,
        help="labelled data in the run's format: an image folder (a split folder with train/ and val/ or test/: "
        "its test/, else its val/), or a text file",
    )
    p.add_argument("--batch-size", type=int, default=64, help="examples per forward pass (default: 64)")
    p.add_argument("--max-image-pixels", type=int, default=None, help=pixels_help("the run's setting"))
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "predict",
        help="label new images or sentences with a finished run",
        description="Top-k labels with probabilities for image files or text lines; for NER runs the "
        "entities of each line with character spans; for relation runs, lines with <e1>..</e1> and "
        "<e2>..</e2> around the entities (or JSON objects with text, head and tail spans).",
    )
    p.add_argument("--run", required=True, help="run directory written by `tunelab train`")
    p.add_argument("inputs", nargs="*", help="image files or folders of images (image runs), or sentences (text runs)")
    p.add_argument("--file", help="a text file with one input per line")
    p.add_argument(
        "--top-k",
        type=int,
        default=PredictSettings.top_k,
        help=f"labels to show per input (default: {PredictSettings.top_k})",
    )
    p.add_argument("--max-image-pixels", type=int, default=None, help=pixels_help("the run's setting"))
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "compare",
        help="run several strategies on the same data and budget and report",
        description="Train every strategy in --strategies on the same data, epochs, evaluation and augmentation "
        "(over --seeds or --folds, optionally at several --data-fractions), each run in its own `tunelab train` "
        "process so its time, peak memory and a crash are its own; then print the results table and write "
        "results.csv, results.md, plots and a self-contained report.html into --out. A failed run is reported "
        "and the others go on. Running the same command again skips finished runs with the same settings; runs "
        "saved with other settings stop it (--rerun retrains them). --executor local --workers N trains N runs "
        "at once on this machine; --executor ray makes each run a Ray task, on a local Ray instance or a cluster.",
    )
    add_arguments(p, CompareConfig, choices=choices, notes=COMPARE_NOTES)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "advise",
        help="recommend a strategy for your data, with the measurements behind it",
        description="Profile the data, measure how well the model's frozen features fit it (LogME of the pretrained "
        "features against a random-init control, per block, nearest-centroid accuracy), and recommend a strategy "
        "with a runner-up and the reasons. --verify trains the top two briefly to check the advice.",
    )
    add_arguments(p, AdviseConfig, choices=choices)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_advise)

    p = sub.add_parser(
        "report",
        help="rebuild a comparison report from existing runs",
        description="Collect finished run directories (or folders holding them) and write results.csv, "
        "results.md, the plots and report.html into --out.",
    )
    p.add_argument("runs", nargs="+", help="run directories, or folders containing run directories")
    p.add_argument("--out", required=True, help="folder for the report files")
    p.add_argument(
        "--margin",
        type=float,
        default=0.01,
        help="largest loss against the best (metric units) still called as good; the paired 95%% interval must rule "
        "out more (default: 0.01)",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "embed",
        help="features of a data set under any model or run, saved as .npz",
        description="Run a frozen model over every example of labelled data (all splits) and save the "
        "pooled features of one block with labels, example ids and class names as an .npz file.",
    )
    p.add_argument(
        "--model", required=True, help="zoo name, timm:<name>, hf:<id>, a model directory or a run directory"
    )
    p.add_argument(
        "--data", required=True, help="labelled data: an image folder, a folder of idx files, or a text table"
    )
    p.add_argument("--out", required=True, help="the .npz file to write")
    p.add_argument(
        "--block", type=int, default=-1, help="block whose pooled output to save; -1 = the last (default: -1)"
    )
    p.add_argument("--batch-size", type=int, default=64, help="examples per forward pass (default: 64)")
    p.add_argument("--max-length", type=int, default=None, help="tokens per text example (default: the model's)")
    p.add_argument(
        "--max-image-pixels",
        type=int,
        default=DataSettings.max_image_pixels,
        help=pixels_help(f"{DataSettings.max_image_pixels:,}".replace(",", "_")),
    )
    p.add_argument("--text-column", default=None, help="text column of a table (default: detected from the header)")
    p.add_argument("--label-column", default="label", help="label column of a table (default: label)")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser(
        "export",
        help="write a finished run as a self-contained model file for serving",
        description="Export a run's best model (LoRA merged, adapters included) with its class names and "
        "preprocessing in the file's metadata; needs `pip install 'tunelab[export]'`.",
    )
    p.add_argument("--run", required=True, help="run directory written by `tunelab train`")
    p.add_argument("--format", default="onnx", help="file format: onnx (default: onnx)")
    p.add_argument("--out", required=True, help="the file to write, e.g. model.onnx")
    p.set_defaults(func=cmd_export)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is: a run tidies up and keeps its last epoch exactly as after Ctrl-C."""


TERMINATED_EXIT = 143
"""The exit code after SIGTERM: 128 + 15, what a shell reports for a process SIGTERM ended, so a supervisor
(systemd, Kubernetes, a batch scheduler) sees the run stopped because it was asked to, not that it failed."""


class _LineTracker:
    """stderr as the commands write it, remembering whether what was written last ended a line.

    Progress bars redraw their line after a carriage return and never end it; an error printed after one must
    start on a line of its own, or `grep '^tunelab: error'` on a log misses it.
    """

    def __init__(self, stream):
        self.stream = stream
        self.at_line_start = True

    def write(self, text: str) -> int:
        if text:
            self.at_line_start = text.endswith("\n")
        return self.stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


@contextlib.contextmanager
def _sigterm_as_interrupt(received: list[int]):
    """Inside the block, SIGTERM raises Terminated (once: a second one while tidying up is only recorded).

    Python's default for SIGTERM is to die on the spot, which skips every cleanup path: a run stopped before
    its first epoch would leave config.yaml and its feature cache behind. As an exception it takes the path
    Ctrl-C takes. Signal handlers can only be set in the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return

    def terminate(signum, frame):
        received.append(signum)
        if len(received) == 1:
            raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 on success, 2 for a TunelabError, 130 after Ctrl-C, 143 after SIGTERM.

    Errors are one line on stderr starting with 'tunelab: error: ', at the start of a line; `--debug` shows
    the traceback instead.
    """
    args = build_parser().parse_args(argv)
    stderr = _LineTracker(sys.stderr)
    received: list[int] = []
    with contextlib.redirect_stderr(stderr), _sigterm_as_interrupt(received):
        try:
            args.func(args)
        except (TunelabError, KeyboardInterrupt) as e:
            if args.debug:
                raise
            message = " ".join(str(e).splitlines()) if isinstance(e, TunelabError) else "interrupted"
            newline = "" if stderr.at_line_start else "\n"
            print(f"{newline}tunelab: error: {message}", file=stderr)  # one line, whatever it quotes
            if received:
                return TERMINATED_EXIT
            return 2 if isinstance(e, TunelabError) else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`build_parser`: every command's flags and help texts.

Building it reads only torch-free registries and settings (the strategy registry, the task registry, the
settings dataclasses), so `--help`, `--version` and flag errors answer without loading torch. Each command's
flags come from its settings dataclass (`settings.add_arguments`) or are plain flags declared here; the
command function they run lives in `cli.commands`.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from tunelab.cli.commands import (
    cmd_advise,
    cmd_compare,
    cmd_embed,
    cmd_eval,
    cmd_export,
    cmd_inspect,
    cmd_lr_find,
    cmd_models,
    cmd_predict,
    cmd_report,
    cmd_train,
    setting_choices,
)
from tunelab.settings import (
    AdviseConfig,
    CompareConfig,
    DataSettings,
    LrFindConfig,
    PredictSettings,
    TrainConfig,
    add_arguments,
    field_docs,
)
from tunelab.settings.compare import COMPARE_NOTES
from tunelab.settings.lr_find import LR_FIND_NOTES
from tunelab.strategies import REGISTRY

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


def pixels_help(default: str) -> str:
    """--max-image-pixels' help for commands that take it as a plain flag: the setting's own doc."""
    return f"{field_docs(DataSettings)['max_image_pixels']} (default: {default})"


class _Version(argparse.Action):
    """--version: the installed package's version, looked up only when asked for (the lookup costs ~30 ms)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import version

        print(f"tunelab {version('tunelab')}")
        parser.exit()


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
        description="Profile the data, measure how well the model's frozen features fit it (a linear probe's "
        "cross-validated accuracy after every block and on a random-init control; LogME and nearest-centroid "
        "accuracy as well), and recommend a strategy with a runner-up, the reasons and the constant rule it had "
        "to beat. Images, sentences, relations and named entities (one row per tagged word). --verify trains the "
        "top two briefly to check the advice.",
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

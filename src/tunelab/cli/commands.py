"""The commands: one `cmd_*` function per subcommand, taking the parsed flags and calling one library function.

Each imports its implementation when it runs (torch and the models load then, never for --help); at module
level only torch-free modules. Plain flags (those not from a settings dataclass) are checked against their
setting's limits here (`check_flags`), and settings resolve with the registries' choices (`setting_choices`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
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
    resolve,
    validate,
)
from tunelab.tasks import task_names


def setting_choices() -> dict[str, tuple[str, ...]]:
    """Allowed values of settings whose choices live in registries above the settings layer: the task names."""
    return {"task": ("auto", *task_names())}


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

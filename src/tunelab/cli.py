"""The `tunelab` command: each subcommand parses its flags and calls one library function.

User mistakes (TunelabError) print as one line and exit with code 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from .errors import TunelabError
from .strategies import REGISTRY

STRATEGY_HELP = "transfer strategy: " + "; ".join(
    f"{key}{f':<{cls.positional}>' if cls.positional else ''} = {cls.summary}" for key, cls in REGISTRY.items()
) + ". Extra fields as :name=value, e.g. full:decay=0.8"


def cmd_models(args: argparse.Namespace) -> None:
    from .zoo import list_models

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
    print("also: timm:<name>, hf:<model id> (downloaded from their hubs), or a local model directory")


def cmd_inspect(args: argparse.Namespace) -> None:
    from .plan import format_plan, plan_dict, prepare

    plan = prepare(args.model, args.strategy, args.num_classes)
    print(json.dumps(plan_dict(plan), indent=2) if args.json else format_plan(plan))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunelab",
        description="Transfer learning: put a pretrained network on your task with a chosen strategy.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
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
    p.add_argument("--model", required=True, help="zoo name (see `tunelab models`), timm:<name>, hf:<id> or a directory")
    p.add_argument("--strategy", default="full", help=STRATEGY_HELP + " (default: full)")
    p.add_argument("--num-classes", type=int, required=True, help="number of target classes (at least 2)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except TunelabError as e:
        if args.debug:
            raise
        print(f"tunelab: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

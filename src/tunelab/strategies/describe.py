"""How a Plan reads to a person and to a program: the `tunelab inspect` table and its JSON.

One row per block and one for the head: state, learning-rate scales, parameter counts, inserted modules.
Everything comes from the Plan itself (what `Strategy.apply` returned), so a new strategy shows up
correctly without any change here.

May import: strategies.base.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tunelab.strategies.base import Plan


@dataclass(frozen=True)
class BlockRow:
    """One line of the plan table."""

    index: int | None
    """Block index (None for the head)."""
    name: str
    """Block name."""
    state: str
    """'trainable', 'frozen', 'frozen+inserted' or 'partial'."""
    lr_scale: str
    """Learning-rate scale(s) of the block's trainable parameters, '-' when none train."""
    params: int
    """All parameters in the block (inserted ones included)."""
    trainable: int
    """Parameters that train."""
    inserted: str
    """Modules the strategy inserted, summarised."""


def plan_rows(plan: Plan) -> list[BlockRow]:
    """One row per block and one for the head."""
    scale = {id(p): g.lr_scale for g in plan.groups for p in g.params}
    added = plan.inserted_params
    model = plan.backbone.model
    parts = [(i, name, f"blocks.{i}") for i, name in enumerate(plan.backbone.block_names)] + [(None, "head", "head")]
    rows = []
    for index, name, prefix in parts:
        params = [(n, p) for n, p in model.named_parameters() if n.startswith(prefix + ".")]
        trainable = [(n, p) for n, p in params if p.requires_grad]
        inserted = [m.description for m in plan.inserted if m.block == index]
        scales = sorted({scale[id(p)] for _, p in trainable}, reverse=True)
        n_train, n_all = sum(p.numel() for _, p in trainable), sum(p.numel() for _, p in params)
        if n_train == 0:
            state = "frozen"
        elif inserted and all(n in added for n, _ in trainable):
            state = "frozen+inserted"
        else:
            state = "trainable" if n_train == n_all else "partial"
        rows.append(
            BlockRow(
                index=index,
                name=name,
                state=state,
                lr_scale=",".join(f"{s:g}" for s in scales) or "-",
                params=n_all,
                trainable=n_train,
                inserted=_summarise(inserted),
            )
        )
    return rows


def _summarise(descriptions: list[str]) -> str:
    counts: dict[str, int] = {}
    for d in descriptions:
        counts[d] = counts.get(d, 0) + 1
    return ", ".join(d if c == 1 else f"{c}x {d}" for d, c in counts.items())


def plan_dict(plan: Plan) -> dict:
    """The plan as JSON-ready data (the `inspect --json` output)."""
    bb = plan.backbone
    return {
        "model": bb.name,
        "family": bb.family,
        "strategy": plan.strategy.spec(),
        "num_classes": bb.num_outputs,
        "blocks": [asdict(r) for r in plan_rows(plan)],
        "groups": [
            {"name": g.name, "lr_scale": g.lr_scale, "params": sum(p.numel() for p in g.params)} for g in plan.groups
        ],
        "frozen_prefix": plan.frozen_prefix,
        "cacheable_prefix": plan.cached_prefix,
        "trainable_params": plan.trainable_params,
        "total_params": plan.total_params,
        "trainable_percent": 100 * plan.trainable_params / plan.total_params,
    }


def format_plan(plan: Plan) -> str:
    """A fixed-width table of the plan followed by the PEFT-style summary line."""
    header = ("#", "block", "state", "lr x", "params", "trainable", "inserted")
    rows = [
        (
            "" if r.index is None else str(r.index),
            r.name,
            r.state,
            r.lr_scale,
            f"{r.params:,}",
            f"{r.trainable:,}",
            r.inserted,
        )
        for r in plan_rows(plan)
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {0, 4, 5}

    def line(cells):
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return "  ".join(padded).rstrip()

    bb = plan.backbone
    title = f"{bb.name} ({bb.family}) with {plan.strategy.spec()} -> {bb.num_outputs} classes"
    k = plan.frozen_prefix
    note = "cacheable" if plan.cached_prefix else "table lookups only: recomputed, cheaper than caching"
    cache = f"frozen prefix: {k} of {len(bb.blocks)} blocks" + (f" ({note})" if k else "")
    return "\n".join([title, line(header), *(line(r) for r in rows), cache, plan.summary_line()])

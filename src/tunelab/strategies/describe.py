"""How a Plan reads to a person and to a program: the `tunelab inspect` table and its JSON.

One row per block and one for the head: state, learning-rate scales, parameter counts, inserted modules;
then the parameter groups and, for a recipe, its phases, probe, L2-SP pull or weight mix. Everything comes
from the Plan itself (what `Strategy.apply` returned and the strategy's recipe hooks), so a new strategy
shows up correctly without any change here. The table shows the union of the phases (every parameter that
trains in some phase counts as trainable); the phases line says when each part trains.

May import: errors, strategies.base, strategies.recipe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tunelab.errors import TunelabError
from tunelab.strategies.base import Plan
from tunelab.strategies.recipe import ALPHA_GRID, Phase

DEFAULT_EPOCHS = 5
"""The --epochs default: the run length phases are shown for when none is given (`tunelab inspect`)."""


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


def _phases(plan: Plan, epochs: int) -> tuple[Phase, ...] | str:
    """The plan's phases for `epochs`, or why they do not fit that many epochs."""
    try:
        return plan.phases(epochs)
    except TunelabError as e:
        return str(e)


def _epoch_span(phases: tuple[Phase, ...], i: int, epochs: int) -> str:
    first, last = phases[i].first_epoch + 1, phases[i + 1].first_epoch if i + 1 < len(phases) else epochs
    return f"epoch {first}" if first == last else f"epochs {first}-{last}"


def recipe_lines(plan: Plan, epochs: int = DEFAULT_EPOCHS) -> list[str]:
    """The parameter groups, then what the strategy does beyond them (nothing more for the classic strategies)."""
    groups = ", ".join(f"{g.name} {g.lr_scale:g}x ({sum(p.numel() for p in g.params):,})" for g in plan.groups)
    lines = [f"parameter groups (lr x head lr, params): {groups}"]
    probe = plan.probe
    if probe is not None:
        lr = "" if probe.lr_scale == 1 else f", lr {probe.lr_scale:g}x"
        lines.append(
            f"before epoch 1: linear probe, the head alone for {probe.epochs} epochs on the frozen backbone's "
            f"features (computed once{lr})"
        )
    phases = _phases(plan, epochs)
    if isinstance(phases, str):
        lines.append(f"phases: {phases}")
    elif len(phases) > 1 or phases[0].frozen:
        spans = " | ".join(f"{_epoch_span(phases, i, epochs)}: {p.name}" for i, p in enumerate(phases))
        lines.append(f"phases over {epochs} epochs: {spans}")
    anchor = plan.anchor
    if anchor is not None:
        lines.append(
            f"L2-SP: alpha/2 ||w - w_pretrained||^2 with alpha {anchor.alpha:g} on {', '.join(sorted(anchor.groups))} "
            "(no weight decay on them)"
        )
    mix = plan.weight_mix
    if mix is not None:
        alpha = (
            f"alpha {mix.alpha:g}"
            if mix.alpha is not None
            else "alpha chosen on validation from "
            + ("0, 0.1, ..., 1" if mix.grid == ALPHA_GRID else ", ".join(f"{a:g}" for a in mix.grid))
        )
        lines.append(
            f"after training: WiSE-FT, w = (1 - alpha) w_pretrained + alpha w_fine-tuned for "
            f"{', '.join(sorted(mix.groups))}; {alpha}"
        )
    return lines


def recipe_dict(plan: Plan, epochs: int = DEFAULT_EPOCHS) -> dict:
    """The recipe as JSON-ready data: phases (1-based first epochs, for `epochs`), probe, anchor, weight mix."""
    phases = _phases(plan, epochs)
    anchor, mix, probe = plan.anchor, plan.weight_mix, plan.probe
    return {
        "phases": phases
        if isinstance(phases, str)
        else [{"first_epoch": p.first_epoch + 1, "name": p.name, "frozen": sorted(p.frozen)} for p in phases],
        "phases_for_epochs": epochs,
        "probe": None if probe is None else {"epochs": probe.epochs, "lr_scale": probe.lr_scale},
        "l2sp": None if anchor is None else {"alpha": anchor.alpha, "groups": sorted(anchor.groups)},
        "weight_mix": None
        if mix is None
        else {"alpha": mix.alpha, "grid": list(mix.grid), "groups": sorted(mix.groups)},
    }


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
        **recipe_dict(plan),
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
    return "\n".join([title, line(header), *(line(r) for r in rows), cache, *recipe_lines(plan), plan.summary_line()])

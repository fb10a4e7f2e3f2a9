"""The optimizer and the learning-rate schedule a run steps with, built from its settings.

One place decides both, so the training loop, a strategy phase that rebuilds them, and the run's opening
lines (`describe_learning_rates`) agree on what they are. The parameter groups come from the strategy's
Plan (`Plan.optimizer_groups`): each group carries its own lr (the head's lr times the group's scale),
and the schedule multiplies every group's lr by the same factor, so the scales hold for the whole run.

The schedule counts *optimizer* steps (with --grad-accumulation N an epoch of B batches is ceil(B / N)
steps) and is a pure function of the step number, so a resumed run continues it exactly.

May import: errors, settings (torch is the only heavy library here).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

ONECYCLE_DIV = 25.0
"""onecycle starts at lr / this (torch's OneCycleLR `div_factor`)."""
ONECYCLE_FINAL_DIV = 1e4
"""onecycle ends at lr / (ONECYCLE_DIV x this) (torch's OneCycleLR `final_div_factor`)."""


def build_optimizer(config, groups: list[dict], device: torch.device) -> torch.optim.Optimizer:
    """The optimizer `config.optimizer` names, over `groups` (each with its own lr and weight_decay).

    adamw: decoupled weight decay, the fused kernel where torch has one (`fused_adamw`). sgd: momentum
    `config.momentum` (no Nesterov) and weight decay as an L2 term added to the gradient, which is what
    SGD's `weight_decay` means in torch; biases and norm weights have none either way (the groups say so).
    """
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=_first_lr(groups), momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=_first_lr(groups), fused=fused_adamw(device))


def _first_lr(groups: list[dict]) -> float:
    """The default lr torch wants beside the groups; every group sets its own, so it is never used."""
    return groups[0]["lr"] if groups else 1e-3


def build_scheduler(config, optimizer: torch.optim.Optimizer, total_steps: int) -> LambdaLR:
    """`config.scheduler` over `total_steps` optimizer steps, with `config.warmup` as its warmup fraction.

    A LambdaLR: every group's lr is its own base lr times one factor (`schedule_factor`), so the
    per-group scales the strategy chose are kept at every step.
    """
    return LambdaLR(optimizer, schedule_factor(config.scheduler, total_steps, config.warmup))


def schedule_factor(kind: str, total_steps: int, warmup: float) -> Callable[[int], float]:
    """The multiplier on each group's lr at optimizer step `step` (0-based, the step about to be taken).

    - cosine / linear: linear warmup over the first `warmup` fraction of steps, from 1/warm up to 1, then
      cosine or linear decay to 0 at `total_steps`;
    - constant: the same warmup, then 1;
    - onecycle (Smith's one-cycle, the lr half of torch's OneCycleLR): a cosine rise from 1/25 to 1 over the
      `warmup` fraction, then a cosine fall to 1/(25 x 1e4). Momentum is not cycled: --momentum (or AdamW's
      beta1) stays what was asked for.
    """
    if kind == "onecycle":
        return _onecycle(total_steps, warmup)
    if kind not in ("cosine", "linear", "constant"):
        raise ValueError(f"unknown scheduler {kind!r}")
    warm = int(total_steps * warmup)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if kind == "constant":
            return 1.0
        done = min((step - warm) / max(1, total_steps - warm), 1.0)
        return 1.0 - done if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * done))

    return factor


def _onecycle(total_steps: int, rising: float) -> Callable[[int], float]:
    """One-cycle as torch's OneCycleLR (cosine annealing, three-phase off) shapes it, as a factor on lr."""
    start, end = 1.0 / ONECYCLE_DIV, 1.0 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV)
    peak = float(rising * total_steps) - 1  # the step at which lr peaks (OneCycleLR's phase boundary)
    last = total_steps - 1

    def cosine(begin: float, finish: float, fraction: float) -> float:
        return finish + (begin - finish) * 0.5 * (1.0 + math.cos(math.pi * fraction))

    def factor(step: int) -> float:
        if step <= peak:
            return cosine(start, 1.0, step / peak) if peak > 0 else 1.0
        return cosine(1.0, end, min((step - peak) / max(last - peak, 1e-12), 1.0))

    return factor


def warmup_cosine(total_steps: int, warmup: float) -> Callable[[int], float]:
    """Linear warmup over the first `warmup` fraction of steps, then cosine decay to zero (the default schedule)."""
    return schedule_factor("cosine", total_steps, warmup)


def optimizer_steps(batches: int, accumulation: int) -> int:
    """Optimizer steps in an epoch of `batches`: one per `accumulation` batches, the last partial group included."""
    return math.ceil(batches / accumulation)


def fused_adamw(device: torch.device) -> bool:
    """Use the fused AdamW kernel where torch has one (CPU and CUDA): the same update, one kernel per step.

    torch's default on the CPU is a Python loop over parameters; on MiniLM-L6 (22.6M parameters, 2 CPU
    threads) that loop took 4-10x the time of the fused step (benchmarks/README.md, loop overhead).
    Hugging Face `Trainer` uses the fused kernel by default too.
    """
    return device.type in ("cpu", "cuda")


def describe_learning_rates(config, groups: list[dict]) -> str:
    """One line for the start of a run: each group's lr (and its scale of the head's), then optimizer and schedule.

    `--lr` is the new head's rate; pretrained weights usually train at a fraction of it. Said at the start
    of every run, so a user who passes a Trainer-style `--lr 2e-5` sees that the encoder trains at 2e-6.
    e.g. "learning rates: head 0.001, backbone 0.0001 (0.1x); adamw, weight decay 0.01; cosine schedule, 10% warmup".
    """
    head = config.lr
    rates: dict[str, float] = {}
    for group in groups:  # a group's decay / no_decay halves share one lr
        rates.setdefault(group["name"].removesuffix(".no_decay"), group["lr"])
    parts = [
        f"{name} {lr:g}" + ("" if not head or math.isclose(lr, head) else f" ({lr / head:.3g}x)")
        for name, lr in rates.items()
    ]
    optimizer = "adamw" if config.optimizer == "adamw" else f"sgd, momentum {config.momentum:g}"
    rise = "rising" if config.scheduler == "onecycle" else "warmup"
    schedule = f"{config.scheduler} schedule, {config.warmup:.0%} {rise}"
    n = config.grad_accumulation
    accumulation = "" if n == 1 else f"; {n} batches per step (effective batch {config.batch_size * n})"
    return (
        f"learning rates: {', '.join(parts)}; {optimizer}, weight decay {config.weight_decay:g}; "
        f"{schedule}{accumulation}"
    )

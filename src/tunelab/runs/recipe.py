"""Carrying out a strategy's recipe: its phases, the linear probe before epoch 1, the L2-SP pull, the weight mix.

What a strategy asks beyond its parameter groups is declared in `strategies.recipe`; this module does it, so
the loop calls a few generic methods at fixed points and never names a strategy:

- `Recipe.of(job)` as soon as the job is loaded: the phases are checked against --epochs (a phase that would
  begin after the run ends is an error before anything trains), and the starting values the pull and the
  mix refer to are copied, before a checkpoint is restored into the model;
- `training_loss(loss, class_weight)`: the run's training loss with the L2-SP term added;
- `probe_head(...)` before epoch 1 of a run that starts from nothing (a resumed run's checkpoint already
  holds the probed head, so a resume never probes again and ends exactly as a straight run);
- `with recipe.epoch(e):` around an epoch's training: the phase's groups frozen; `record(e)` for metrics;
- `mix_weights(...)` after the last epoch, before the best model is scored once;
- `summary()` and `note()`: what summary.json and the run's last line say about it.

The phase of an epoch is a function of the epoch alone, so a run resumed in the middle of a phase, or right
at a switch, trains exactly what the straight run trains.

May import: errors, fileio, settings, strategies, tasks, runs.checkpoint_io, runs.evaluate, runs.feature_cache,
runs.loaders, runs.optim, runs.rundir, runs.trained.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from accelerate.utils import send_to_device

from tunelab.models.contract import TokenState, head_pool
from tunelab.runs.checkpoint_io import load_tensors
from tunelab.runs.evaluate import predict_logits
from tunelab.runs.feature_cache import build_cache, collate_features
from tunelab.runs.loaders import EpochShuffle, collate_for, example_dataset, make_loader
from tunelab.runs.optim import build_optimizer, build_scheduler
from tunelab.runs.trained import load_trained, save_trained
from tunelab.strategies import Plan
from tunelab.strategies.recipe import Phase
from tunelab.tasks.base import labelled_positions, target_weight, task_loss

if TYPE_CHECKING:
    from accelerate import Accelerator

    from tunelab.runs.checkpoints import Progress
    from tunelab.runs.job import Feed, Job
    from tunelab.runs.rundir import RunDir

PROBE_SEED = 7_919
"""Offsets the probe's random stream (head dropout) from the epochs', which are seeded by (seed, epoch)."""


class Recipe:
    """One run's recipe: its phases, and the starting values its pull and weight mix refer to."""

    def __init__(self, plan: Plan, epochs: int, main: bool):
        self.plan, self.epochs, self.main = plan, epochs, main
        self.phases: tuple[Phase, ...] = plan.phases(epochs)  # a phase that does not fit is an error here
        self.anchor, self.mix = plan.anchor, plan.weight_mix
        self.anchored = _params_of(plan, self.anchor.groups) if self.anchor else []
        self.pairs = [(p, p.detach().clone()) for _, p in self.anchored]  # (parameter, where it started)
        mixed = _mixed_tensors(plan, self.mix.groups) if self.mix else {}
        self.mix_start = {name: t.detach().clone() for name, t in mixed.items()}  # what alpha 0 restores
        self.probe_report: dict | None = None
        self.mix_report: dict | None = None
        self._shown: int | None = None

    @classmethod
    def of(cls, job: Job, main: bool = True) -> Recipe:
        """The recipe of a loaded job, checked against its epochs; warns when a group never gets to train."""
        recipe = cls(job.plan, job.config.epochs, main)
        never = frozenset.intersection(*(p.frozen for p in recipe.phases))
        if never and main:
            spec = job.plan.strategy.spec()
            print(
                f"tunelab: warning: {spec} over {job.config.epochs} epoch(s) keeps {', '.join(sorted(never))} frozen "
                "throughout: the run is too short for its phases; give more --epochs",
                file=sys.stderr,
            )
        return recipe

    # ------------------------------------------------------------ phases

    def phase_at(self, epoch: int) -> tuple[int, Phase]:
        """The index and phase an epoch (0-based) belongs to."""
        index = max(i for i, p in enumerate(self.phases) if p.first_epoch <= epoch)
        return index, self.phases[index]

    @contextmanager
    def epoch(self, epoch: int) -> Iterator[Phase]:
        """The epoch's phase in force for the `with` block: its frozen groups get no gradient and no update."""
        index, phase = self.phase_at(epoch)
        if len(self.phases) > 1 and self._shown != index and self.main:
            print(f"phase {index + 1}/{len(self.phases)} from epoch {epoch + 1}: {phase.name} trains", file=sys.stderr)
        self._shown = index
        with self.plan.in_phase(phase):
            yield phase

    def record(self, epoch: int) -> dict:
        """What metrics.jsonl says about the epoch's phase (nothing for a strategy with one phase)."""
        return {"phase": self.phase_at(epoch)[1].name} if len(self.phases) > 1 else {}

    # ------------------------------------------------------------ the L2-SP pull

    def training_loss(self, loss: Callable, class_weight: torch.Tensor | None) -> Callable:
        """`loss` plus alpha/2 ||w - w_start||^2 over the anchored parameters that train (the loss itself without
        an anchor). A summed loss (gradient accumulation: a group's batches each divide their sum by the
        group's target weight) gets the pull in proportion to the batch's weight, so a group adds it once."""
        if self.anchor is None:
            return loss

        def penalised(logits, labels, reduction: str = "mean", **kwargs) -> torch.Tensor:
            value = loss(logits, labels, reduction=reduction, **kwargs)
            pull = self.pull()
            return value + (pull * target_weight(labels, class_weight) if reduction == "sum" else pull)

        return penalised

    def pull(self) -> torch.Tensor:
        """alpha/2 * sum ||w - w_start||^2 over the anchored parameters that train now (0 when none do)."""
        if self.pairs and self.pairs[0][1].device != self.pairs[0][0].device:  # the model moved to its device
            self.pairs = [(p, start.to(p.device)) for p, start in self.pairs]
        terms = [(p - start).pow(2).sum() for p, start in self.pairs if p.requires_grad]
        if not terms:
            return torch.zeros(())
        return 0.5 * self.anchor.alpha * torch.stack(terms).sum()

    # ------------------------------------------------------------ the linear probe before epoch 1

    def probe_head(self, job: Job, run: RunDir, feed: Feed, accelerator: Accelerator, loss: Callable, validation):
        """LP-FT's probe: the head alone, `probe.epochs` passes over the frozen backbone's output.

        The output of every block is computed once in eval mode and cached (spilled to disk past
        --cache-memory-mb / 2), unless --no-cache or the blocks' output carries what the cache cannot hold
        (a relation's entity positions): then each pass recomputes it without gradients. Every process
        probes on all the training data with the same seed, so all end with the same head without exchanging
        anything; the model's parameters are shared with the prepared model, so epoch 1 starts from it.
        """
        probe = self.plan.probe
        if probe is None:
            return
        config, backbone = job.config, job.plan.backbone
        model, n, device = backbone.model, len(backbone.blocks), accelerator.device
        started = time.perf_counter()
        collate = collate_for(backbone, config.max_length, config.task)

        def plain(examples):
            return example_dataset(examples, backbone, False, False, config.task, config.max_length)

        sets = {"train": plain(job.splits.train), "val": plain(job.splits.val)}
        cached = config.cache and _cacheable(model, n, make_loader(sets["train"], 2, collate, 0), device)
        if cached:
            pool = head_pool(model.head)  # the probe trains the head alone: every block is frozen
            budget = config.cache_memory_mb / 2 if feed.start == 0 else float("inf")  # spill names are the feed's
            sets = {
                name: build_cache(
                    model,
                    n,
                    make_loader(data, config.batch_size, collate, config.num_workers),
                    data.labels,
                    budget,
                    run.inside(run.cache / f"{name}-{accelerator.process_index}.npy"),
                    device,
                    desc=f"probe: caching {name} features (blocks 0-{n - 1}{', pooled' if pool else ''})",
                    pool=pool,
                )
                for name, data in sets.items()
            }
            collate = collate_features
        head = [p for g in self.plan.groups if g.name == "head" for p in g.params]
        groups = [
            {"params": [p for p in head if p.ndim > 1], "weight_decay": config.weight_decay},
            {"params": [p for p in head if p.ndim <= 1], "weight_decay": 0.0},
        ]
        groups = [{**g, "lr": config.lr * probe.lr_scale, "name": "probe"} for g in groups if g["params"]]
        optimizer = build_optimizer(config, groups, device)
        sampler = EpochShuffle(len(sets["train"]), config.seed)
        loader = make_loader(sets["train"], config.batch_size, collate, 0 if cached else config.num_workers, sampler)
        scheduler = build_scheduler(config, optimizer, probe.epochs * len(loader))
        model.blocks.eval()  # frozen for the probe: no dropout, BatchNorm statistics fixed (`set_train_mode` after)
        model.head.train()
        train_loss = 0.0
        for epoch in range(probe.epochs):
            torch.manual_seed(config.seed * 1_000_003 + PROBE_SEED + epoch)
            sampler.set_epoch(epoch)
            total = 0.0
            for inputs, labels in loader:
                features = _features(model, n, send_to_device(inputs, device), cached)
                with accelerator.autocast():
                    value = loss(model(features, start=n), labels.to(device))
                value.backward()
                if config.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(head, config.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                total += value.item()
            train_loss = total / max(len(loader), 1)
        for p in model.parameters():  # epoch 1's optimizer starts from no gradient, whatever the loss reached
            p.grad = None
        val_loss, score = self._probe_score(model, n, sets["val"], collate, cached, config, device, validation)
        seconds = time.perf_counter() - started
        metric = validation.metric
        self.probe_report = {
            "epochs": probe.epochs,
            "train_loss": train_loss,
            "val_loss": val_loss,
            f"val_{metric}": score,
            "cached": cached,
            "seconds": seconds,
        }
        if self.main:
            print(
                f"linear probe: the head for {probe.epochs} epochs on {'cached ' if cached else ''}features of all "
                f"{n} blocks: train loss {train_loss:.4f}, val loss {val_loss:.4f}, val {metric} {score:.4f} "
                f"({seconds:.1f}s)",
                file=sys.stderr,
            )
        if cached:
            for name in sets:
                run.inside(run.cache / f"{name}-{accelerator.process_index}.npy").unlink(missing_ok=True)

    @staticmethod
    @torch.no_grad()
    def _probe_score(model, n, data, collate, cached, config, device, validation) -> tuple[float, float]:
        """The probed head's validation loss and score (every process scores all of validation itself)."""
        model.head.eval()
        parts = []
        for inputs, labels in make_loader(data, config.batch_size, collate, 0 if cached else config.num_workers):
            logits = model(_features(model, n, send_to_device(inputs, device), cached), start=n)
            parts.append(labelled_positions(logits.float().cpu(), labels))
        logits = torch.cat([lg for lg, _ in parts])
        labels = torch.cat([lb for _, lb in parts])
        scores = validation.score(logits, labels.numpy())
        return float(task_loss(logits, labels)), scores[validation.metric]

    # ------------------------------------------------------------ the weight mix after training

    def mix_weights(self, job: Job, step, validation, run: RunDir, meta: dict, progress: Progress) -> Progress:
        """WiSE-FT on the best epoch's model: mix, choose alpha on validation, save the mix as the run's model.

        Ties in the score go to the lower validation loss, then to the smaller alpha. The saved model says it
        is a mix (metadata 'weight_mix'), so a run stopped after saving it and resumed does not mix twice.
        Returns the progress with the mixed model's validation score as the best score: the run reports
        the model it saved.
        """
        if self.mix is None or not run.model.is_file():
            return progress
        model, accelerator = job.plan.backbone.model, step.accelerator
        _, raw = load_tensors(run.model)
        load_trained(run.model, model)  # the best epoch (or its mix, saved before a stop)
        if "weight_mix" in raw:
            self.mix_report = json.loads(raw["weight_mix"])
            return replace(progress, best_score=self.mix_report["val_score"])
        current = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        trained = {name: current[name].detach().clone() for name in self.mix_start}
        alphas = self.mix.grid if self.mix.alpha is None else (self.mix.alpha,)
        tried = []
        for alpha in alphas:
            self._set_mix(current, trained, alpha)
            logits, labels = predict_logits(accelerator, step.model, validation.loader, step.start)
            val_loss = float(task_loss(logits, torch.from_numpy(labels)))
            tried.append((alpha, validation.score(logits, labels)[validation.metric], val_loss))
        alpha, score, val_loss = max(tried, key=lambda t: (t[1], -t[2], -t[0]))
        self._set_mix(current, trained, alpha)
        self.mix_report = {
            "alpha": alpha,
            "chosen_on": "validation" if self.mix.alpha is None else "given",
            "val_score": score,
            "val_loss": val_loss,
            "fine_tuned_val_score": progress.best_score,
            "val_scores": {f"{a:g}": s for a, s, _ in tried},
        }
        if accelerator.is_main_process:
            save_trained(run.inside(run.model), model, {**meta, "weight_mix": self.mix_report})
        accelerator.wait_for_everyone()
        return replace(progress, best_score=score)

    def _set_mix(self, current: dict, trained: dict, alpha: float) -> None:
        """w = (1 - alpha) w_start + alpha w_trained for every mixed tensor (exact at alpha 0 and 1: torch.lerp)."""
        with torch.no_grad():
            for name, start in self.mix_start.items():
                end = trained[name]
                current[name].copy_(torch.lerp(start.to(end.device, end.dtype), end, alpha))

    # ------------------------------------------------------------ what the run reports

    def summary(self) -> dict:
        """summary.json's keys for the recipe (none for a strategy without one)."""
        out: dict = {}
        if len(self.phases) > 1:
            out["phases"] = [{"first_epoch": p.first_epoch + 1, "name": p.name} for p in self.phases]
        probe = self.plan.probe
        if probe is not None:  # a resumed run probed before its checkpoint, in an earlier process
            out["probe"] = self.probe_report or {"epochs": probe.epochs, "before": "the checkpoint this run resumed"}
        if self.anchor is not None:
            out["l2sp"] = {"alpha": self.anchor.alpha, "groups": sorted(self.anchor.groups)}
        if self.mix_report is not None:
            out["weight_mix"] = self.mix_report
        return out

    def note(self) -> str:
        """An addition to the run's last line: the chosen mixing weight (nothing without a weight mix)."""
        report = self.mix_report
        if report is None:
            return ""
        how = "chosen on validation" if report["chosen_on"] == "validation" else "given"
        return f"; WiSE-FT alpha {report['alpha']:g} ({how}; fine-tuned alone: {report['fine_tuned_val_score']:.4f})"


def _params_of(plan: Plan, groups: frozenset[str]) -> list[tuple[str, torch.nn.Parameter]]:
    """(name, parameter) of every parameter in the named groups."""
    return [(n, p) for g in plan.groups if g.name in groups for n, p in zip(g.names, g.params)]


def _mixed_tensors(plan: Plan, groups: frozenset[str]) -> dict[str, torch.Tensor]:
    """The parameters of the named groups and the float buffers (BatchNorm statistics) of the modules owning them."""
    params = dict(_params_of(plan, groups))
    out: dict[str, torch.Tensor] = dict(params)
    for module_name, module in plan.backbone.model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        if any(prefix + n in params for n, _ in module.named_parameters(recurse=False)):
            for b, buffer in module.named_buffers(recurse=False):
                if buffer is not None and buffer.is_floating_point():
                    out[prefix + b] = buffer
    return out


def _features(model, n: int, inputs, cached: bool):
    """What the head receives: the cached output of every block, or that output computed now without gradients."""
    if cached:
        return inputs
    with torch.no_grad():
        return model(inputs, stop=n)


@torch.no_grad()
def _cacheable(model, n: int, loader, device) -> bool:
    """Whether the feature cache holds all the head needs: not when a TokenState carries entity positions."""
    was = model.training
    model.eval()
    inputs, _ = next(iter(loader))
    out = model(send_to_device(inputs, device), stop=n)
    model.train(was)
    return not (isinstance(out, TokenState) and out.entity_starts is not None)


def ddp_kwargs(config) -> list:
    """accelerate's DDP settings for a run: a strategy with phases freezes groups after DDP has wrapped the model,
    so DDP must look for parameters that got no gradient (`find_unused_parameters`) rather than wait for them.
    Such parameters keep no gradient (None), so the optimizer leaves them alone, weight decay included."""
    from accelerate import DistributedDataParallelKwargs

    from tunelab.strategies import Strategy, parse_strategy

    phased = type(parse_strategy(config.strategy)).phases is not Strategy.phases
    return [DistributedDataParallelKwargs(find_unused_parameters=True)] if phased else []

"""A finished tunelab run as a backbone: develop a source model on a data-rich task, then transfer it.

`load_backbone("runs/source")` rebuilds the run (its zoo model plus its checkpoint, as `tunelab eval`
does) and hands back its network in the contract's shape, so any strategy can transfer it to new
classes exactly as it transfers a zoo model. What the source run learned becomes the new backbone:

- **LoRA is merged** into the weights it adapted (`merge_lora`): the backbone is the plain architecture
  again, with the updated weights, and a new LoRA on top starts from those.
- **Bottleneck adapters stay**, as ordinary layers inside their blocks (they are non-linear, so they cannot
  be folded into the weights). A new strategy treats them like the rest of their block: `none` freezes them,
  `full` trains them, `adapter` wraps a fresh adapter around the block (or layer) they sit in, and `lora`
  targets the same layers the source model's LoRA would have (looked up through the adapter wrappers).
- **The preprocessing is the source run's**: its model's image normalisation and the size it trained at
  (its `--image-size`, else its model's), or its tokenizer and the `--max-length` it was trained with.
- **The head is the source run's**, until `prepare` replaces it for the new classes (a zoo model keeps its
  ImageNet head the same way); `tunelab embed` never uses it.

`pretrained=False` (the `scratch` baseline, advise's random-init control) gives the source run's
architecture with random weights: the network the source run started from, without what it learned.

A run trained from another run needs that run to stay where it was: the checkpoint holds only what its
strategy trained, and the rest is rebuilt from the source by the path recorded in its config.yaml
(relative paths are read from the current directory). `tunelab export` makes a self-contained file.

This file registers run directories as a model source (`models.registry`) when it is imported, which
`tunelab.runs` does, so every command that loads models by name (prepare, embed, advise, compare, the CLI)
accepts a run directory. It is asked before a plain model directory: a run directory holds config.yaml or
summary.json, a `save_pretrained` folder config.json.

May import: errors, models, strategies, tasks, runs.rundir, runs.trained.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import nn

from tunelab.errors import TunelabError
from tunelab.models.contract import Backbone
from tunelab.models.inputs import ImageInput, TextInput
from tunelab.models.registry import ModelSource, register_source
from tunelab.models.zoo import load_backbone
from tunelab.runs.rundir import RunDir
from tunelab.runs.trained import load_run
from tunelab.strategies.layers import Adapted, merge_lora
from tunelab.tasks import single_label_tasks


def is_run_dir(path: Path) -> bool:
    """Whether `path` is (or was meant to be) a tunelab run directory: it holds config.yaml or summary.json."""
    run = RunDir(path)
    return path.is_dir() and (run.config.is_file() or run.summary.is_file())


def from_run(path: Path, pretrained: bool = True, trust_remote_code: bool = False) -> Backbone:
    """The backbone a finished run trained (LoRA merged, adapters kept, its preprocessing), named by its path.

    A run whose model is itself, or another run that leads back to it, is refused by `load_run` (a cycle).
    """
    run = load_run(path, trust_remote_code)
    task = run.config.task
    sources = single_label_tasks()
    if task not in sources:
        raise TunelabError(f"{path} is a {task} run; a source model must come from one of: {', '.join(sources)}")
    source = run.plan.backbone
    if not pretrained:
        random = load_backbone(run.config.model, pretrained=False, trust_remote_code=trust_remote_code)
        return replace(random, name=str(path), input=_input(random, run.config.max_length, run.config.image_size))
    merge_lora(source.model)
    for p in source.model.parameters():
        p.requires_grad_(True)  # as loaded from the zoo: the next strategy decides what trains
    model = source.model
    return replace(
        source,
        name=str(path),
        input=_input(source, run.config.max_length, run.config.image_size),
        adapter_sites=[
            replace(site, path=_through_adapters(model, site.path, into=False)) for site in source.adapter_sites
        ],
        lora_targets=[_through_adapters(model, target, into=True) for target in source.lora_targets],
        pretrained=True,
    )


def _input(backbone: Backbone, max_length: int | None, image_size: int | None):
    """The source run's preprocessing: its model's, with the token limit or image size the run was trained with."""
    if isinstance(backbone.input, TextInput) and max_length is not None:
        return replace(backbone.input, max_length=max_length)
    if isinstance(backbone.input, ImageInput) and image_size is not None:
        return replace(backbone.input, size=image_size)
    return backbone.input


def _through_adapters(model: nn.Module, path: str, into: bool) -> str:
    """`path` (a name from before adapters were inserted) as it is named now that they wrap some modules.

    An adapter wraps a module as `Adapted(base, adapter)`, so what was `blocks.2.0.conv` may now be
    `blocks.2.base.0.conv`. With `into`, the result names the original layer itself (for LoRA); without,
    the outermost module at that place (an adapter site, so a new adapter wraps the old one).
    """
    module, parts = model, []
    for name in path.split("."):
        while isinstance(module, Adapted):
            module, parts = module.base, [*parts, "base"]
        module, parts = module.get_submodule(name), [*parts, name]
    while into and isinstance(module, Adapted):
        module, parts = module.base, [*parts, "base"]
    return ".".join(parts)


def _build(name: str, pretrained: bool, trust_remote_code: bool) -> Backbone:
    return from_run(Path(name), pretrained, trust_remote_code)


register_source(ModelSource("a tunelab run directory", 30, lambda name: is_run_dir(Path(name)), _build))

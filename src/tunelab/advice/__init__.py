"""Advice: which transfer strategy to use, from measurements of the model on the user's own data.

    profile.py           the data before any model sees it: class counts, image sizes or text lengths, sampling
    transferability.py   numpy-only scores of frozen features: LogME, nearest-centroid accuracy, feature shift
    measure.py           everything that touches a model or data: features per block, the random-init
                         control, candidate sizes -> `Measurements`
    decide.py            the decision guide, a pure function: `Measurements` + `Thresholds` + `Budget` -> `Advice`
                         (no model, no data, no I/O, no torch: tested on hand-made measurements)
    api.py               `advise(model, data, ...)`: measure, then decide (the library entry point)
    command.py           `tunelab advise`: the settings, the advice, and `--verify` by a short compare

Imports inside run one way: command -> api -> measure -> decide -> profile; measure -> transferability.
This package imports nothing on its own, so reading `decide` does not load torch.

May import: compare, embed, export, runs, tasks, data, strategies, models, settings, fileio, errors
(everything below it; only `cli` sits above).
"""

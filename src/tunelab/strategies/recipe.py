"""What a strategy may ask of the training loop beyond its parameter groups: phases, a probe, a pull, a weight mix.

The classic strategies assign parameters to groups once, for the whole run. The recipes beyond them change
*when* groups train, or add one thing before, during or after training:

- `Phase`: from an epoch on, some of the plan's groups are frozen (gradual unfreezing, ULMFiT);
- `Probe`: before epoch 1 the head alone trains on the frozen backbone's features (LP-FT's linear probe);
- `Anchor`: a pull toward the starting weights added to the training loss, in place of weight decay (L2-SP);
- `WeightMix`: after training, the weights interpolated between start and end, the mixing weight chosen on
  validation (WiSE-FT).

A strategy returns these from its hooks (`Strategy.phase_starts`, `phases`, `probe`, `anchor`, `weight_mix`,
all "nothing" by default); `runs.recipe` carries them out, and the loop only calls that, never a strategy by
name. They are derived from the strategy and the plan each time they are asked for, never stored on the Plan,
so a task that rebuilds the Plan after the strategy (`Task.finish`) cannot drop them.

May import: errors. No torch: these are declarations.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.errors import TunelabError

ALPHA_GRID = tuple(i / 10 for i in range(11))
"""Mixing weights WiSE-FT tries on validation when none is given: 0 (the start), 0.1, ..., 1 (the trained model)."""


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs in which some of the plan's groups are frozen; it lasts until the next one begins."""

    first_epoch: int
    """0-based epoch at which the phase begins."""
    name: str
    """What trains in it, for people: 'head', 'blocks 6-8 + head', 'everything'."""
    frozen: frozenset[str] = frozenset()
    """Names of the plan's groups that do not train in this phase (requires_grad off: no gradient, no update)."""


@dataclass(frozen=True)
class Probe:
    """Before epoch 1, the head alone trains on the frozen backbone's output, computed once (a linear probe).

    The epochs of the probe come on top of the run's epochs: they cost a head, not a backbone.
    """

    epochs: int
    """Passes over the training features."""
    lr_scale: float = 1.0
    """The probe's learning rate as a multiple of the head's (--lr)."""


@dataclass(frozen=True)
class Anchor:
    """L2-SP: alpha/2 * ||w - w_start||^2 over the named groups joins the training loss (Li et al., ICML 2018).

    Those groups get no weight decay: the pull toward the starting (pretrained) weights replaces the pull
    toward zero, which would fight it. Every other group (the new head) keeps --weight-decay, as the paper
    keeps plain L2 on the new layers.
    """

    alpha: float
    """Strength of the pull."""
    groups: frozenset[str]
    """Names of the plan's groups that are pulled toward where they started."""


@dataclass(frozen=True)
class WeightMix:
    """After training, w = (1 - alpha) w_start + alpha w_trained for the named groups (WiSE-FT, Wortsman et al. 2022).

    Applied to the best epoch's model; alpha 0 is the starting backbone, 1 the fine-tuned one. The groups'
    parameters are mixed, and so are the float buffers (BatchNorm statistics) of the modules that own them.
    """

    alpha: float | None
    """The mixing weight; None = the one of `grid` that scores best on validation."""
    groups: frozenset[str]
    """Names of the plan's groups that are mixed (the pretrained ones; a new head has no start to mix with)."""
    grid: tuple[float, ...] = ALPHA_GRID
    """The mixing weights tried when `alpha` is None."""


def check_fraction(value: float | None, spec: str, name: str) -> None:
    """A mixing weight must lie in [0, 1]."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise TunelabError(f"{spec}: {name}={value:g} is outside [0, 1]; 0 keeps the start, 1 the trained weights")


def check_phases_fit(starts: tuple[int, ...], epochs: int, spec: str, what: str) -> None:
    """Every phase must begin before the run ends (`what` names the last one); otherwise it never trains."""
    if starts[-1] >= epochs:
        raise TunelabError(
            f"{spec}: {what} begins at epoch {starts[-1] + 1}, after a {epochs}-epoch run ends; "
            f"train for --epochs {starts[-1] + 1} or more, or shorten the phases"
        )

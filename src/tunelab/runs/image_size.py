"""The side of the square image a run feeds its model: --image-size, or the model's own input size when unset.

The size is part of the model's preprocessing (`ImageInput.size`), which every image transform, the feature
cache and the ONNX export already read from the backbone. So the setting is
applied once, to the prepared backbone, where a run is prepared (`runs.job.load_job`) and where a finished
run is loaded back (`runs.trained.load_run`, for eval, predict, export and a run used as a model): a run
evaluates, predicts and exports at the size it trained at, because its config.yaml holds the setting.

Training resizes and crops to the size as before (random resized crop; evaluation: short side to
size / crop_pct, centre crop). A CNN takes any size through its global pooling; a model with a fixed
input (a ViT's position embeddings) may refuse other sizes when it first runs.

May import: errors, strategies, models.
"""

from __future__ import annotations

from dataclasses import replace

from tunelab.errors import TunelabError
from tunelab.models.contract import Backbone
from tunelab.strategies import Plan


def with_image_size(plan: Plan, image_size: int | None) -> Plan:
    """`plan` with its backbone taking `image_size` x `image_size` images (None: as it is).

    A text model has no image size: asking for one is refused, since ignoring it would let a user believe
    it did something.
    """
    if image_size is None:
        return plan
    return replace(plan, backbone=sized(plan.backbone, image_size))


def sized(backbone: Backbone, image_size: int | None) -> Backbone:
    """`backbone` taking `image_size` x `image_size` images (None: as it is); a text model refuses a size."""
    if image_size is None:
        return backbone
    if backbone.modality != "image":
        raise TunelabError(
            f"image_size is for image models; {backbone.name} is a {backbone.modality} model: drop --image-size "
            "(--max-length bounds a text's tokens)"
        )
    return replace(backbone, input=replace(backbone.input, size=image_size))

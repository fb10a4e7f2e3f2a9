"""The demo: MobileNetV2 transferred to ants vs bees with two strategies, on a laptop CPU in a few minutes.

`none` trains only a new head on cached frozen features; `adapter` inserts small bottleneck modules into
the frozen backbone and trains them with the head. Both runs are ordinary run directories: try
`tunelab eval --run runs/demo/adapter --data examples/hymenoptera_small/val` or
`tunelab predict --run runs/demo/none examples/hymenoptera_small/val/bees/*.jpg`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tunelab.runs.loop import train
from tunelab.settings import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "hymenoptera_small"
OUT = ROOT / "runs" / "demo"


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    results = {}
    for strategy, epochs in (("none", 10), ("adapter", 4)):
        config = TrainConfig(
            model="mobilenet_v2",
            strategy=strategy,
            data=str(DATA),
            out=str(OUT / strategy),
            epochs=epochs,
            batch_size=16,
        )
        results[strategy] = train(config)
    print("\nstrategy  val accuracy  trainable params  train time  checkpoint   run directory")
    for strategy, s in results.items():
        print(
            f"{strategy:<8}  {s['score']:>12.4f}  {s['trainable_params']:>16,}  {s['train_seconds']:>9.1f}s  "
            f"{s['checkpoint_bytes'] / 1024:>8.1f} KiB  {OUT / strategy}"
        )


if __name__ == "__main__":
    main()

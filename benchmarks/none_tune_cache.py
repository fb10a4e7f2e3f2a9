"""None-Tune end to end against the PyTorch transfer-learning tutorial as written: MobileNetV2 on hymenoptera.

Three sides, each repetition running every side once in a fresh process (order A B C, then C B A, ...), the
driver timing each whole process from the outside: interpreter start, imports, weights, data, training and
validation, exit. That is the time a user waits, on either side.

- `tunelab`: `python -m tunelab train --model mobilenet_v2 --strategy none --data <hymenoptera> --epochs 10
  --batch-size 16 --seed S` as a user types it (the frozen backbone runs once, its features are cached).
- `tutorial`: the tutorial's "ConvNet as fixed feature extractor" transcribed from its text
  (`tutorial_as_written`): `ImageFolder`, its transforms (RandomResizedCrop(224) + flip for training,
  Resize(256) + CenterCrop(224) for validation, ImageNet mean/std), `DataLoader(shuffle=True,
  num_workers=4)`, the pretrained model with every parameter frozen (`requires_grad = False`) and a new last
  layer, `CrossEntropyLoss`, `SGD(lr=0.001, momentum=0.9)` on the new layer, `StepLR(step_size=7,
  gamma=0.1)`, and its `train_model`: a train phase and a val phase every epoch, the best weights saved
  when val accuracy improves and loaded at the end. The tutorial's model is ResNet-18; here it is
  MobileNetV2 with its own ImageNet weights (`weights="IMAGENET1K_V1"`: the very file tunelab packages, found
  in a TORCH_HOME cache made for the run, so nothing is downloaded) and `classifier[1]` as the new layer.
- `tutorial-check`: a second transcription of the same text, written separately (`tutorial_transcribed_again`),
  to check that the first one's time is the tutorial's and not an accident of how it was typed: its time must
  agree within the noise.

Departures from the tutorial, the same on every side (issue 21): batch 16 (the tutorial says 4), 10 epochs (it
says 25), 2 threads; and both sides read the same files (the hymenoptera JPEGs; the tutorial's ImageFolder
would skip the one GIF anyway). Accuracy is each side's best validation accuracy over the epochs, on the 153
`val/` images.

Run: .venv/bin/python benchmarks/none_tune_cache.py [--repetitions 3] [--quick]
(--quick: 4/2 images per class, 2 epochs, one repetition, table printed only.) Writes
benchmarks/results/none_tune_cache.md and the table between its markers in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import RESULT, emit, image_subset, load_note, machine, write_table

SIDES = ("tunelab", "tutorial", "tutorial-check")
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


# ---------------------------------------------------------------- the tutorial, transcribed twice


def tutorial_as_written(data_dir: str, num_epochs: int, batch_size: int, num_workers: int, seed: int) -> dict:
    """The tutorial's fixed-feature-extractor section, in its order and with its names."""
    from tempfile import TemporaryDirectory

    import torch
    import torch.nn as nn
    import torch.optim as optim
    import torchvision
    from torch.optim import lr_scheduler
    from torchvision import datasets, transforms

    torch.manual_seed(seed)
    started = time.time()

    # Data augmentation and normalization for training
    # Just normalization for validation
    data_transforms = {
        "train": transforms.Compose(
            [
                transforms.RandomResizedCrop(224),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            ]
        ),
        "val": transforms.Compose(
            [
                transforms.Resize(256),
                transforms.CenterCrop(224),
                transforms.ToTensor(),
                transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            ]
        ),
    }
    image_datasets = {x: datasets.ImageFolder(os.path.join(data_dir, x), data_transforms[x]) for x in ["train", "val"]}
    dataloaders = {
        x: torch.utils.data.DataLoader(image_datasets[x], batch_size=batch_size, shuffle=True, num_workers=num_workers)
        for x in ["train", "val"]
    }
    dataset_sizes = {x: len(image_datasets[x]) for x in ["train", "val"]}
    class_names = image_datasets["train"].classes
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")

    def train_model(model, criterion, optimizer, scheduler, num_epochs=25):
        since = time.time()
        # Create a temporary directory to save training checkpoints
        with TemporaryDirectory() as tempdir:
            best_model_params_path = os.path.join(tempdir, "best_model_params.pt")
            torch.save(model.state_dict(), best_model_params_path)
            best_acc = 0.0
            for epoch in range(num_epochs):
                print(f"Epoch {epoch}/{num_epochs - 1}")
                print("-" * 10)
                # Each epoch has a training and validation phase
                for phase in ["train", "val"]:
                    if phase == "train":
                        model.train()  # Set model to training mode
                    else:
                        model.eval()  # Set model to evaluate mode
                    running_loss = 0.0
                    running_corrects = 0
                    # Iterate over data.
                    for inputs, labels in dataloaders[phase]:
                        inputs = inputs.to(device)
                        labels = labels.to(device)
                        # zero the parameter gradients
                        optimizer.zero_grad()
                        # forward
                        # track history if only in train
                        with torch.set_grad_enabled(phase == "train"):
                            outputs = model(inputs)
                            _, preds = torch.max(outputs, 1)
                            loss = criterion(outputs, labels)
                            # backward + optimize only if in training phase
                            if phase == "train":
                                loss.backward()
                                optimizer.step()
                        # statistics
                        running_loss += loss.item() * inputs.size(0)
                        running_corrects += torch.sum(preds == labels.data)
                    if phase == "train":
                        scheduler.step()
                    epoch_loss = running_loss / dataset_sizes[phase]
                    epoch_acc = running_corrects.double() / dataset_sizes[phase]
                    print(f"{phase} Loss: {epoch_loss:.4f} Acc: {epoch_acc:.4f}")
                    # deep copy the model
                    if phase == "val" and epoch_acc > best_acc:
                        best_acc = epoch_acc
                        torch.save(model.state_dict(), best_model_params_path)
                print()
            time_elapsed = time.time() - since
            print(f"Training complete in {time_elapsed // 60:.0f}m {time_elapsed % 60:.0f}s")
            print(f"Best val Acc: {best_acc:4f}")
            # load best model weights
            model.load_state_dict(torch.load(best_model_params_path, weights_only=True))
        return model, float(best_acc), time_elapsed

    # ConvNet as fixed feature extractor
    model_conv = torchvision.models.mobilenet_v2(weights="IMAGENET1K_V1")
    for param in model_conv.parameters():
        param.requires_grad = False
    # Parameters of newly constructed modules have requires_grad=True by default
    num_ftrs = model_conv.classifier[1].in_features
    model_conv.classifier[1] = nn.Linear(num_ftrs, len(class_names))
    model_conv = model_conv.to(device)
    criterion = nn.CrossEntropyLoss()
    # Observe that only parameters of final layer are being optimized as opposed to before.
    optimizer_conv = optim.SGD(model_conv.classifier[1].parameters(), lr=0.001, momentum=0.9)
    # Decay LR by a factor of 0.1 every 7 epochs
    exp_lr_scheduler = lr_scheduler.StepLR(optimizer_conv, step_size=7, gamma=0.1)
    model_conv, best_acc, train_s = train_model(
        model_conv, criterion, optimizer_conv, exp_lr_scheduler, num_epochs=num_epochs
    )
    return {"accuracy": best_acc, "train_s": train_s, "in_process_s": time.time() - started}


def tutorial_transcribed_again(root: str, epochs: int, batch: int, workers: int, seed: int) -> dict:
    """The same tutorial section, typed a second time in another shape, as the check on the first."""
    import torch
    from torch import nn
    from torchvision import datasets, models
    from torchvision import transforms as T

    torch.manual_seed(seed)
    started = time.perf_counter()
    train_tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    val_tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])
    train_set = datasets.ImageFolder(f"{root}/train", train_tf)
    val_set = datasets.ImageFolder(f"{root}/val", val_tf)
    loaders = {
        "train": torch.utils.data.DataLoader(train_set, batch_size=batch, shuffle=True, num_workers=workers),
        "val": torch.utils.data.DataLoader(val_set, batch_size=batch, shuffle=True, num_workers=workers),
    }

    net = models.mobilenet_v2(weights=models.MobileNet_V2_Weights.IMAGENET1K_V1)
    net.requires_grad_(False)  # freeze everything, then put a fresh (trainable) last layer on
    net.classifier[-1] = nn.Linear(net.last_channel, len(train_set.classes))
    loss_fn = nn.CrossEntropyLoss()
    sgd = torch.optim.SGD(net.classifier[-1].parameters(), lr=1e-3, momentum=0.9)
    step_lr = torch.optim.lr_scheduler.StepLR(sgd, 7, gamma=0.1)

    def one_phase(name: str) -> float:
        """One pass over a phase's loader; returns its accuracy (and trains in the train phase)."""
        training = name == "train"
        net.train(training)
        hits, total_loss = 0, 0.0
        for x, y in loaders[name]:
            sgd.zero_grad()
            with torch.set_grad_enabled(training):
                out = net(x)
                loss = loss_fn(out, y)
                if training:
                    loss.backward()
                    sgd.step()
            total_loss += loss.item() * len(y)
            hits += int((out.argmax(1) == y).sum())
        n = len(loaders[name].dataset)
        print(f"{name} loss {total_loss / n:.4f} acc {hits / n:.4f}")
        return hits / n

    begun = time.perf_counter()
    best, best_state = 0.0, None
    for epoch in range(epochs):
        print(f"epoch {epoch + 1}/{epochs}")
        one_phase("train")
        step_lr.step()
        accuracy = one_phase("val")
        if accuracy > best:
            best, best_state = accuracy, {k: v.clone() for k, v in net.state_dict().items()}
    train_s = time.perf_counter() - begun
    net.load_state_dict(best_state)
    return {"accuracy": best, "train_s": train_s, "in_process_s": time.perf_counter() - started}


# ---------------------------------------------------------------- one side, one fresh process


def torch_home_with_weights(folder: Path) -> Path:
    """A TORCH_HOME whose hub cache holds torchvision's MobileNetV2 ImageNet file (tunelab's packaged copy)."""
    from tunelab.models.packaged import MOBILENET_V2

    cache = folder / "hub" / "checkpoints"
    cache.mkdir(parents=True, exist_ok=True)
    link = cache / "mobilenet_v2-b0353104.pth"
    if not link.exists():
        link.symlink_to(MOBILENET_V2.verified_path())
    return folder


def timed_process(argv: list[str], env: dict) -> tuple[float, float, str]:
    """Run argv; (wall seconds, CPU seconds of it and the children it waited for, stdout)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            sys.stderr.write(err.read()[-4000:])
            raise RuntimeError(f"{' '.join(argv[:4])} ... failed with exit code {proc.returncode}")
        return wall, usage.ru_utime + usage.ru_stime, out.read()


def run_side(side: str, args, data: Path, work: Path, rep: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TORCH_HOME": str(work / "torch-home")}
    if side == "tunelab":
        out = work / f"tunelab-{rep}"
        argv = [sys.executable, "-m", "tunelab", "train", "--model", "mobilenet_v2", "--strategy", "none"]
        argv += ["--data", str(data), "--out", str(out), "--epochs", str(args.epochs)]
        argv += ["--batch-size", str(args.batch_size), "--seed", str(args.seed + rep)]
        wall, cpu, _ = timed_process(argv, env)
        summary = json.loads((out / "summary.json").read_text())
        result = {"accuracy": summary["val_score"], "in_process_s": summary["train_seconds"]}
    else:
        argv = [sys.executable, __file__, "--side", side, "--data", str(data), "--epochs", str(args.epochs)]
        argv += ["--batch-size", str(args.batch_size), "--seed", str(args.seed + rep)]
        argv += ["--tutorial-workers", str(args.tutorial_workers)]
        wall, cpu, stdout = timed_process(argv, env)
        result = json.loads([line for line in stdout.splitlines() if line.startswith(RESULT)][-1][len(RESULT) :])
    result = {"end_to_end_s": wall, "cpu_s": cpu, **result}
    print(f"  {side}: " + ", ".join(f"{k} {v:.3g}" for k, v in result.items()), flush=True)
    return result


def worker(args) -> None:
    transcription = tutorial_as_written if args.side == "tutorial" else tutorial_transcribed_again
    emit(transcription(args.data, args.epochs, args.batch_size, args.tutorial_workers, args.seed))


# ---------------------------------------------------------------- the driver


def paired(a: list[dict], b: list[dict], key: str) -> str:
    ratios = [x[key] / y[key] for x, y in zip(a, b)]
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def spread(results: list[dict], key: str, digits: int = 1) -> str:
    values = [r[key] for r in results]
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4/2 images per class, 2 epochs, 1 repetition")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tutorial-workers", type=int, default=4, help="DataLoader workers (the tutorial's 4)")
    parser.add_argument("--side", choices=SIDES[1:], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return worker(args)

    work = Path(tempfile.mkdtemp(prefix="bench-none-tune-"))
    torch_home_with_weights(work / "torch-home")
    per_class = (4, 2) if args.quick else (None, None)
    data = image_subset(work / "hymenoptera", *per_class)  # the JPEGs, as symbolic links: the same files on every side
    n_train, n_val = (len(list((data / split).glob("*/*.jpg"))) for split in ("train", "val"))
    if args.quick:
        args.epochs, args.repetitions = 2, 1
    load_before = os.getloadavg()[0]
    results: dict[str, list[dict]] = {side: [] for side in SIDES}
    for rep in range(args.repetitions):
        print(f"repetition {rep + 1}/{args.repetitions} (load average {os.getloadavg()[0]:.1f})", flush=True)
        for side in SIDES if rep % 2 == 0 else tuple(reversed(SIDES)):
            results[side].append(run_side(side, args, data, work, rep))
    load_after = os.getloadavg()[0]

    t, a, b = (results[s] for s in SIDES)
    names = {
        "tunelab": "tunelab `none` (CLI, feature cache)",
        "tutorial": "tutorial as written",
        "tutorial-check": "tutorial, second transcription",
    }
    rows = [
        f"| {names[s]} | {spread(r, 'end_to_end_s')} | {paired(r, t, 'end_to_end_s')} | {spread(r, 'cpu_s')} | "
        f"{spread(r, 'in_process_s')} | {spread(r, 'accuracy', 4)} | {len(r)} |"
        for s, r in results.items()
    ]
    table = [
        f"MobileNetV2 `none` vs the PyTorch transfer-learning tutorial's fixed feature extractor on hymenoptera "
        f"({n_train}/{n_val} train/val JPEGs), {args.epochs} epochs, batch {args.batch_size}, seeds {args.seed}.."
        f"{args.seed + args.repetitions - 1} (one per repetition); tutorial DataLoaders with "
        f"{args.tutorial_workers} workers, as it writes them. Each side a fresh process per repetition, the order "
        f"alternating; medians (min-max). Machine: {machine(args.threads)}; {load_note(load_before, load_after)}.",
        "",
        "| side | end-to-end s | ratio to tunelab (paired) | CPU s (with workers) | in-process s (after imports) "
        "| best val accuracy | reps |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Speed-up of tunelab end to end against the tutorial as written: paired {paired(a, t, 'end_to_end_s')}; "
        f"the second transcription against the first: paired {paired(b, a, 'end_to_end_s')} (should be about 1).",
    ]
    write_table("none_tune_cache", "\n".join(table), args.quick)


if __name__ == "__main__":
    main()

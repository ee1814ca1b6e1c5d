"""A small, resumable training loop shared by every network we train (the AR model now; decoders later).

The loop owns no randomness: the caller gives ``batch_for_step(step)``, a pure function of the step number (seed
the data order with the run's seed and the step), so a run that is killed and resumed from its last checkpoint
takes exactly the same steps as one that never stopped — bit for bit on the same machine and thread count
(``tests/test_train.py`` checks it).

On disk, in ``out_dir``::

    checkpoints/step-0000400.safetensors   model weights ("model.*") and AdamW moments ("optim.*")
    checkpoints/state.json                 which file is current, the step, the optimiser's settings
    loss.csv                               step, lr, loss and the loss function's named parts
    loss.png                               the loss curve, redrawn at every checkpoint

A checkpoint is written to a scratch name and renamed into place, then ``state.json`` is replaced the same way,
so an interruption at any moment leaves the previous checkpoint usable.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from tortoise_lab.files import atomic_path

__all__ = ["LoopConfig", "LoopResult", "train_loop", "learning_rate", "load_checkpoint",
           "latest_step", "checkpoint_state", "training_summary", "step_generator", "STEP_SEED_STRIDE"]

STEP_SEED_STRIDE = 1_000_003  # run seed * stride + step/epoch: distinct generator seeds per run and step
STATE_FILE = "state.json"
CHECKPOINT_DIR = "checkpoints"
LOSS_CSV = "loss.csv"
LOSS_PLOT = "loss.png"
KEEP_CHECKPOINTS = 2  # the newest files kept; older ones are removed once a newer one is in place


@dataclass
class LoopConfig:
    steps: int = 1000
    lr: float = 1e-3
    warmup_steps: int = 100  # linear warm-up, then cosine decay to min_lr_ratio * lr at the last step
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    checkpoint_every: int = 250
    log_every: int = 10
    progress: bool = True


@dataclass
class LoopResult:
    steps_done: int  # the step count reached (== config.steps when finished)
    resumed_from: int  # 0 for a fresh run
    losses: list[float]  # the loss of every step this call ran
    seconds: float  # this call's time
    # Time to train to the last checkpoint, over every call: what the checkpoint resumed from carried (steps lost
    # to an interruption after it are redone and counted once), plus this call's time up to its last checkpoint.
    total_seconds: float = 0.0
    resumed_seconds: float = 0.0  # what the checkpoint resumed from carried (0: fresh, or an older checkpoint)


def learning_rate(step: int, config: LoopConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then half a cosine down to ``min_lr_ratio * lr``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.min_lr_ratio * config.lr
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, config: LoopConfig) -> torch.optim.AdamW:
    """AdamW; weight decay only on matrices (norms, biases and embeddings' scales are left alone)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=config.lr, betas=config.betas)


# ------------------------------------------------------------------------------------------- checkpoints


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            value = torch.as_tensor(value)
            tensors[f"optim.{index}.{name}"] = (value.reshape(1) if value.dim() == 0 else value).clone()  # 0-d "step"
    return tensors, {"param_groups": state["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: dict) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value.reshape(()) if name == "step" else value
    return {"state": state, "param_groups": groups["param_groups"]}


def save_checkpoint(out_dir: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write weights + optimiser to a new file, then point state.json at it; prune old files."""
    from safetensors.torch import save_file

    folder = Path(out_dir) / CHECKPOINT_DIR
    name = f"step-{step:07d}.safetensors"
    tensors = {f"model.{k}": v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    optim_tensors, groups = _flatten_optimizer(optimizer)
    tensors.update(optim_tensors)
    with atomic_path(folder / name) as scratch:
        save_file(tensors, str(scratch))
    state = {"step": step, "weights": name, "optimizer": groups, "extra": extra or {}}
    with atomic_path(folder / STATE_FILE) as scratch:
        scratch.write_text(json.dumps(state, indent=1))
    for old in sorted(folder.glob("step-*.safetensors"))[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return folder / name


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator a batch function draws step ``step``'s batch from: batches become a pure function of
    (seed, step), which is what makes a resumed run take the same steps as one that never stopped."""
    return torch.Generator().manual_seed(seed * STEP_SEED_STRIDE + step + 1)


def checkpoint_state(out_dir: str | Path) -> dict | None:
    """``state.json`` of the current checkpoint in ``out_dir`` (step, weights file, optimiser settings, and under
    "extra" the loop config and the training time), None when there is none."""
    path = Path(out_dir) / CHECKPOINT_DIR / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def training_summary(out_dir: str | Path) -> dict:
    """Steps, first and last logged loss and training seconds of a run in ``out_dir`` (from its ``loss.csv`` and
    its checkpoint), as the experiments record them in a manifest."""
    import csv

    loss_log = Path(out_dir) / "loss.csv"
    rows = list(csv.DictReader(loss_log.open())) if loss_log.is_file() else []
    state = checkpoint_state(out_dir) or {}
    return {"steps": state.get("step", 0), "first_loss": float(rows[0]["loss"]) if rows else None,
            "final_loss": float(rows[-1]["loss"]) if rows else None,
            "seconds": state.get("extra", {}).get("seconds")}


def latest_step(out_dir: str | Path) -> int:
    """The step of the current checkpoint in ``out_dir``, 0 when there is none."""
    state = checkpoint_state(out_dir)
    return state["step"] if state else 0


def load_checkpoint(out_dir: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Restore the current checkpoint into ``model`` (strict) and ``optimizer``; returns state.json's contents."""
    from safetensors.torch import load_file

    folder = Path(out_dir) / CHECKPOINT_DIR
    state = json.loads((folder / STATE_FILE).read_text())
    tensors = load_file(str(folder / state["weights"]))
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    if optimizer is not None:
        optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
    return state


# ------------------------------------------------------------------------------------------------- logs


def _truncate_log(path: Path, after_step: int) -> None:
    """Drop rows past the checkpoint we resume from (they were logged by the interrupted run and will be redone)."""
    if not path.is_file():
        return
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    kept = [rows[0]] + [r for r in rows[1:] if int(r[0]) <= after_step] if rows else []
    with atomic_path(path) as scratch:
        with scratch.open("w", newline="") as handle:
            csv.writer(handle).writerows(kept)


def plot_losses(csv_path: Path, png_path: Path) -> None:
    """Loss (and each named part) against step, log scale."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    steps = [int(r["step"]) for r in rows]
    figure, axis = plt.subplots(figsize=(8, 4), constrained_layout=True)
    for column in [c for c in rows[0] if c not in ("step", "lr", "seconds")]:
        axis.plot(steps, [float(r[column]) for r in rows], label=column)
    axis.set(xlabel="step", ylabel="loss", yscale="log", title="training loss")
    axis.legend()
    with atomic_path(png_path) as scratch:
        figure.savefig(scratch, dpi=90, format="png")
    plt.close(figure)


# ------------------------------------------------------------------------------------------------- loop


def train_loop(model: nn.Module, loss_fn: Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, float]]],
               batch_for_step: Callable[[int], Any], config: LoopConfig, out_dir: str | Path,
               resume: bool = True) -> LoopResult:
    """Train ``model`` to ``config.steps`` steps, resuming from ``out_dir``'s checkpoint when there is one.

    ``loss_fn(model, batch)`` returns (scalar loss to minimise, {part name: float} to log). Checkpoints every
    ``checkpoint_every`` steps and at the end; the loss CSV gets the mean over each ``log_every`` steps.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    optimizer = make_optimizer(model, config)
    start, earlier = 0, 0.0  # the step and training time the checkpoint resumed from carries
    if resume and latest_step(out_dir) > 0:
        state = load_checkpoint(out_dir, model, optimizer)
        start, earlier = state["step"], float(state.get("extra", {}).get("seconds", 0.0))
    csv_path = out_dir / LOSS_CSV
    _truncate_log(csv_path, start)
    model.train()
    losses: list[float] = []
    window: dict[str, list[float]] = {}
    recorded = earlier
    began = time.perf_counter()
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, desc="training",
               disable=not config.progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        loss, parts = loss_fn(model, batch_for_step(step))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"The loss became {value} at step {step}; lower the learning rate.")
        losses.append(value)
        for name, part in {"loss": value, **parts}.items():
            window.setdefault(name, []).append(float(part))
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            _append_log(csv_path, done, learning_rate(step, config), window)
            bar.set_postfix(loss=f"{sum(window['loss']) / len(window['loss']):.3f}")
            window = {}
        if done % config.checkpoint_every == 0 or done == config.steps:
            recorded = earlier + time.perf_counter() - began
            save_checkpoint(out_dir, done, model, optimizer, {"config": asdict(config), "seconds": recorded})
            plot_losses(csv_path, out_dir / LOSS_PLOT)
    model.eval()
    return LoopResult(steps_done=config.steps, resumed_from=start, losses=losses,
                      seconds=time.perf_counter() - began, total_seconds=recorded, resumed_seconds=earlier)


def _append_log(path: Path, step: int, lr: float, window: dict[str, list[float]]) -> None:
    means = {name: sum(values) / len(values) for name, values in window.items()}
    new = not path.is_file()
    with path.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["step", "lr", *means])
        writer.writerow([step, f"{lr:.6g}", *(f"{v:.6f}" for v in means.values())])

"""Item 4: a CIFAR-10 retrain from scratch with ``fast_resnet``, timed on one GPU.

The retrain is roar's own trainer (``roar.train.train_model``), so the figure is what a sweep trial
gets: the data resident on the device as one tensor, channels_last and bf16 autocast (the trainer
does both on CUDA), a large batch, batched flip/crop augmentation, and optionally ``torch.compile``.
A warm-up retrain on a few batches of the same shapes runs first, untimed, so compilation and cuDNN
autotuning are not counted (as in airbench's timing).

Without a GPU the same code path runs on CPU with ``quick=True`` on random tiny data: it checks the
code, it measures nothing.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import torch

from roar.datasets import ImageData, load_dataset, make_image_data
from roar.models import build_model
from roar.train import TrainConfig, evaluate, train_model

from .report import Metric

SECONDS_GOAL = 5.0        # per retrain on one H100-class GPU
ACCURACY_GOAL = 0.90      # clean CIFAR-10 test accuracy


@dataclass(frozen=True)
class CifarRecipe:
    """The retrain. Units: width in channels of the first stage, lr the peak of the one-cycle schedule."""

    width: int = 64
    epochs: int = 10
    batch_size: int = 512
    lr: float = 0.4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.2
    augment: str = "flip_crop"
    compile: bool = True
    seed: int = 0
    quick: bool = False     # random tiny data, a tiny net, one epoch: CPU tests of the code path

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, optimizer="sgd",
                           momentum=self.momentum, weight_decay=self.weight_decay, schedule="onecycle",
                           augment=self.augment, label_smoothing=self.label_smoothing)


QUICK_RECIPE = CifarRecipe(width=8, epochs=1, batch_size=32, compile=False, quick=True)


def random_cifar_like(n_train: int = 96, n_test: int = 48, seed: int = 0) -> ImageData:
    """uint8 (N, 3, 32, 32) noise with 10 random labels: the shapes of CIFAR-10, none of its content."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n_train + n_test, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n_train + n_test,), generator=g)
    return make_image_data("random_cifar_like", x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes=10)


def _model(recipe: CifarRecipe, data: ImageData, device):
    model = build_model("fast_resnet", data.channels, data.num_classes, data.mean, data.std, width=recipe.width,
                        seed=recipe.seed).to(device)
    return torch.compile(model) if recipe.compile else model


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def cifar_retrain(data: ImageData, recipe: CifarRecipe, device="cpu") -> dict:
    """Warm up, then one timed retrain and a test on the whole test split.
    Returns seconds (training only, wall), seconds_eval, accuracy, loss."""
    x_train = data.train_x.to(device).float().div_(255)
    x_test = data.test_x.to(device).float().div_(255)
    y_train, y_test = data.train_y.to(device), data.test_y.to(device)
    cfg = recipe.train_config()
    # warm-up: one full batch and the trailing partial batch, so every step shape of the real run is seen
    n = x_train.shape[0]
    tail = n % cfg.batch_size
    warm = min(n, cfg.batch_size + tail)
    start = time.perf_counter()
    model = _model(recipe, data, device)
    # the timed run restarts from these weights in the same (compiled) module, so nothing recompiles
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    train_model(model, x_train[:warm], y_train[:warm], replace(cfg, epochs=1), device, seed=recipe.seed)
    evaluate(model, x_test, y_test, device)
    _sync(device)
    warmup_seconds = time.perf_counter() - start

    model.load_state_dict(initial)
    _sync(device)
    start = time.perf_counter()
    train_model(model, x_train, y_train, cfg, device, seed=recipe.seed)
    _sync(device)
    seconds = time.perf_counter() - start
    accuracy, loss = evaluate(model, x_test, y_test, device)
    _sync(device)
    return {"seconds": seconds, "seconds_eval": time.perf_counter() - start - seconds,
            "seconds_warmup": warmup_seconds, "accuracy": accuracy, "loss": loss,
            "n_train": int(n), "n_test": int(x_test.shape[0])}


def card_name(device) -> str:
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def gpu_section(recipe: CifarRecipe, cuda: str | None, log=print, data_root: str | None = None
                ) -> tuple[list[Metric], dict]:
    """Item 4 rows. `cuda`: the CUDA device to use, or None (then only a quick recipe runs, on CPU)."""
    names = ("CIFAR-10 retrain, fast_resnet", "CIFAR-10 clean test accuracy")
    if cuda is None and not recipe.quick:
        return [Metric("gpu", names[0], "s", skipped="no CUDA device", goal_on="fast", goal_op="le",
                       goal=SECONDS_GOAL),
                Metric("gpu", names[1], "", skipped="no CUDA device", goal_on="fast", goal=ACCURACY_GOAL)], \
            {"skipped": "no CUDA device"}
    device = cuda or "cpu"
    card = card_name(device)
    if recipe.quick:
        data = random_cifar_like()
    else:
        data = load_dataset("cifar10", root=data_root)
    log(f"[gpu] {data.name}: fast_resnet width {recipe.width}, {recipe.epochs} epochs, batch {recipe.batch_size}, "
        f"compile={recipe.compile} on {card}")
    result = cifar_retrain(data, recipe, device)
    details = {"card": card, "device": str(device), "dataset": data.name, "recipe": asdict(recipe), **result}
    flops = _flops_metric(recipe, data, result, device, card)
    details["flops"] = flops.note
    if recipe.quick:  # random labels: the numbers only show the path ran
        note = f"{card}, random tiny data: code path check, not a measurement"
        return [Metric("gpu", names[0] + " (quick)", "s", fast=result["seconds"], note=note),
                Metric("gpu", names[1] + " (quick)", "", fast=result["accuracy"], note=note), flops], details
    note = f"{card}; warm-up {result['seconds_warmup']:.1f} s not counted"
    return [Metric("gpu", f"{names[0]} on {card}", "s", fast=result["seconds"], goal_on="fast", goal_op="le",
                   goal=SECONDS_GOAL, note=note),
            Metric("gpu", f"{names[1]} on {card}", "", fast=result["accuracy"], goal_on="fast", goal=ACCURACY_GOAL,
                   note=note), flops], details


def _flops_metric(recipe: CifarRecipe, data: ImageData, result: dict, device, card: str) -> Metric:
    """Achieved training TFLOP/s (3 x forward FLOPs x images x epochs / seconds) and its share of the
    device's peak: on CUDA a measured 8192^2 bf16 matmul (the trainer's autocast precision; fp32 beside
    it), on CPU cores x clock x FMA width (benchmarks.flops)."""
    from .flops import cpu_peak, matmul_flops, retrain_flops

    model = build_model("fast_resnet", data.channels, data.num_classes, data.mean, data.std, width=recipe.width)
    work = retrain_flops(model, torch.zeros((1, *data.train_x.shape[1:])), result["n_train"], recipe.epochs)
    achieved = work / result["seconds"]
    if torch.device(device).type == "cuda":
        bf16, fp32 = (matmul_flops(str(device), dtype, n=8192, seconds=1.0) for dtype in (torch.bfloat16, torch.float32))
        peak, label = bf16, f"a measured bf16 matmul on {card} ({bf16 / 1e12:.0f} TFLOP/s; fp32 {fp32 / 1e12:.0f})"
    else:
        p = cpu_peak(torch.get_num_threads())
        peak, label = p["peak"], f"the fp32 peak of {p['threads']} core(s) ({p['peak'] / 1e9:.0f} GFLOP/s)"
    return Metric("gpu", f"training TFLOP/s, fast_resnet on {card}", "TFLOP/s", fast=achieved / 1e12,
                  note=f"{100 * achieved / peak:.1f}% of {label}; {work / 1e12:.2f} TFLOP per retrain (3 x forward)")

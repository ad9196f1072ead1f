"""How close the retrain is to the machine's limit (issue 15 item 5): achieved FLOP/s and share of peak.

Work: forward FLOPs per image counted from the model's Conv2d and Linear layers (2 FLOPs per
multiply-add) on one input; a training step costs about 3x the forward (forward + backward for the
activations and the weights), so a retrain is 3 x forward x train images x epochs. Peak on a CPU:
cores x clock x FLOPs per cycle, the last from the SIMD flags (AVX-512: 16 fp32 lanes, AVX2+FMA: 8,
SSE: 4) x 2 (a fused multiply-add) x 2 FMA units per core (what current x86 server cores have; stated,
not measured). A measured fp32 matmul on the same threads is reported beside it: the practical
ceiling of dense kernels. On CUDA the peak is the measured matmul (fp32 and bf16).
"""
from __future__ import annotations

import os
import time

import torch
from torch import nn

FMA_UNITS = 2          # per core, assumed (see the module docstring)


def forward_flops(model: nn.Module, sample: torch.Tensor) -> float:
    """FLOPs of one forward pass of `sample` (batch of 1), Conv2d and Linear layers only."""
    total = [0.0]

    def conv(m: nn.Conv2d, _, out):
        kh, kw = m.kernel_size
        total[0] += 2.0 * out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear(m: nn.Linear, _, out):
        total[0] += 2.0 * out.numel() * m.in_features

    hooks = [m.register_forward_hook(conv) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for h in hooks:
            h.remove()
    return total[0] / sample.shape[0]


def _cpuinfo() -> tuple[set[str], float | None]:
    flags, mhz = set(), None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags" and not flags:
                    flags = set(value.split())
                elif key.strip() == "cpu MHz" and mhz is None:
                    mhz = float(value)
    except (OSError, ValueError):
        pass
    try:  # the rated maximum beats the momentary clock where the kernel exposes it
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as f:
            mhz = int(f.read()) / 1000.0
    except (OSError, ValueError):
        pass
    return flags, mhz


def cpu_peak(threads: int) -> dict:
    """fp32 peak FLOP/s of `threads` cores (and of every core this process may use), from the flags."""
    flags, mhz = _cpuinfo()
    lanes, simd = ((16, "AVX-512") if "avx512f" in flags else (8, "AVX2+FMA") if {"avx2", "fma"} <= flags
                   else (8, "AVX") if "avx" in flags else (4, "SSE"))
    per_cycle = lanes * 2 * FMA_UNITS
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_core = (mhz or 0.0) * 1e6 * per_cycle
    return {"simd": simd, "clock_ghz": (mhz or 0.0) / 1000, "flops_per_cycle": per_cycle, "threads": threads,
            "peak": per_core * threads, "cores": cores, "machine_peak": per_core * cores}


def matmul_flops(device: str = "cpu", dtype=torch.float32, n: int = 1024, seconds: float = 0.5) -> float:
    """Measured FLOP/s of an n x n matmul, repeated for about `seconds` (threads: torch's current setting)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    a @ b
    sync()
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    sync()
    return 2.0 * n ** 3 * reps / (time.perf_counter() - start)


def retrain_flops(model: nn.Module, sample: torch.Tensor, train_images: int, epochs: int) -> float:
    """FLOPs of one retrain: 3 x forward x images x epochs."""
    return 3.0 * forward_flops(model, sample) * train_images * epochs

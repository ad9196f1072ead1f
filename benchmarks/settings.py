"""What the benchmark runs: one preset for the full run (≤ 10 minutes on 2 CPU cores) and one for
``--quick`` (seconds; used by the test suite). Every knob in one place, with its unit."""
from __future__ import annotations

from dataclasses import dataclass

from roar.spec import TrialSpec

# The retrain every figure is about: the demo sweep's Fashion-MNIST recipe (specs/demo.yaml).
DEMO_RETRAIN = dict(dataset="fashion_mnist", subset=2000, test_subset=1000, model="small_cnn", width=8, epochs=4,
                    batch_size=64, lr=0.05, protocol="roar", fill="mean", fraction=0.5, seed=0)
QUICK_RETRAIN = dict(DEMO_RETRAIN, subset=512, test_subset=256, epochs=2, batch_size=32)

# Tiny trials for the memory run: synthetic 16x16 images, seconds per hundred trials.
TINY_TRIAL = dict(dataset="synthetic", subset=64, test_subset=64, model="small_cnn", width=4, epochs=1,
                  batch_size=32, lr=0.05, protocol="roar", fill="mean", attribution="saliency", seed=0)


def _sweep_fields(trial: dict) -> dict:
    """A trial's fields without those the benchmark sweeps put on their axes."""
    return {k: v for k, v in trial.items() if k not in ("fraction", "seed", "attribution")}


@dataclass(frozen=True)
class BenchSettings:
    name: str
    retrain: dict                           # TrialSpec fields of the compared retrain (item 1)
    methods: tuple[tuple[str, int], ...]    # (attribution method, naive/fast retrain pairs) of item 1
    sweep_trial: dict                       # TrialSpec fields fixed in the sweep runs (items 2, 3)
    sweep_seeds: tuple[int, ...]            # their grid: seeds x fractions x sigmas
    sweep_fractions: tuple[float, ...]
    sweep_sigmas: tuple[float, ...]         # Gaussian blur of the maps, pixels
    memory_trials: int                      # tiny trials of the memory run (item 5)
    memory_reference_trial: int             # RSS growth from this trial to the last is reported
    rss_growth_goal_mib: float              # allowed worker/driver RSS growth over the second half, MiB
    accuracy_tolerance: float               # naive vs fast test accuracy may differ by this much
    threads: int = 1                        # torch threads per retrain (the sweep's cpus_per_trial)
    gpu_packing: tuple[int, ...] = (1, 2, 4, 8)   # trials packed on one GPU (GPU machines only)
    gpu_quick: bool = False                 # the CIFAR retrain on random tiny data (any device)
    # section `store` (issue 15): a study-sized results store
    store_trials: int = 10_800              # per-trial row files in the store
    store_today_sample: int = 2_000         # today's code is timed on this many files, scaled (linear)
    store_compact_base: int = 10_000        # compacted rows before an incremental compaction ...
    store_new_rows: int = 1_000             # ... of this many new row files
    store_s3: bool = True                   # also status and load on a local S3 server (moto)
    store_s3_today_sample: int = 300
    store_report_trials: tuple[int, ...] = (10_800, 100_000)   # `roar report` on compacted stores this big

    def retrain_spec(self, method: str) -> TrialSpec:
        return TrialSpec(**{**self.retrain, "attribution": method})



FULL = BenchSettings(
    name="full", retrain=DEMO_RETRAIN, methods=(("saliency", 2), ("integrated_gradients", 1)),
    sweep_trial=_sweep_fields(DEMO_RETRAIN),
    sweep_seeds=(0, 1), sweep_fractions=(0.1, 0.5, 0.9), sweep_sigmas=(0.0, 1.0),
    memory_trials=200, memory_reference_trial=20, rss_growth_goal_mib=16.0, accuracy_tolerance=0.03)

QUICK = BenchSettings(
    name="quick", retrain=QUICK_RETRAIN, methods=(("saliency", 1),), sweep_trial=_sweep_fields(TINY_TRIAL),
    sweep_seeds=(0,), sweep_fractions=(0.3, 0.7), sweep_sigmas=(0.0,),
    memory_trials=24, memory_reference_trial=6, rss_growth_goal_mib=16.0, accuracy_tolerance=0.1,
    gpu_packing=(1, 2), gpu_quick=True, store_trials=240, store_today_sample=240, store_compact_base=200,
    store_new_rows=40, store_s3=False, store_report_trials=(240,))

PRESETS = {"full": FULL, "quick": QUICK}

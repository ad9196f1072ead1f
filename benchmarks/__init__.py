"""Throughput benchmarks of the roar-sweep path, as ratios against a naive loop measured side by side.

Run ``python -m benchmarks`` or ``roar bench`` (``--quick`` for a seconds-long check). Modules:
naive (the baseline retrain), fast (the roar path's retrain), retrain (item 1: retrains per hour),
sweep_bench (items 2, 3, 5 through the real Ray sweep), gpu (item 4: CIFAR-10 retrain on a GPU),
rss (memory sampling), report (table and JSON), settings (the full and quick presets).
"""

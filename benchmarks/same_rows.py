"""Does a change leave results unchanged? Run a spec's trials in this process (no Ray, one thread) and
record every trial's id and result columns; compare two such records.

    python -m benchmarks.same_rows record specs/smoke.yaml /tmp/before.json
    ... change the code ...
    python -m benchmarks.same_rows record specs/smoke.yaml /tmp/after.json
    python -m benchmarks.same_rows compare /tmp/before.json /tmp/after.json

A refactor passes when both records hold the same trial ids with identical values (exact equality).
"""
from __future__ import annotations

import json
import math
import sys
import tempfile

RESULT_COLUMNS = ("status", "accuracy", "loss", "base_accuracy", "accuracy_drop", "leakage_accuracy",
                  "removed_fraction_actual", "blur_spectral_centroid", "blur_total_variation", "blur_hf_energy",
                  "mask_perimeter_area", "mask_components", "mask_morans_i", "map_gini", "auc", "fidelity",
                  "accuracy_base_wrong", "agreement_base")


def record(spec_path: str, out_path: str) -> dict:
    import torch

    from roar import pipeline
    from roar.storage import Store
    from sweep.grid import expand
    from sweep.spec import load_spec

    torch.set_num_threads(1)
    spec = load_spec(spec_path, check_environment=False)
    store = Store(tempfile.mkdtemp(prefix="same-rows-"))
    rows = {}
    trials = expand(spec)
    for i, trial in enumerate(trials, 1):
        row = pipeline.run_trial(trial, store, "cpu", sweep_name=spec.name)
        rows[trial.trial_id] = {c: row.get(c) for c in RESULT_COLUMNS}
        print(f"\r{i}/{len(trials)} trials", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    with open(out_path, "w") as f:
        json.dump(rows, f, indent=1, sort_keys=True)
    return rows


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare(before_path: str, after_path: str) -> list[str]:
    before, after = (json.load(open(p)) for p in (before_path, after_path))
    problems = [f"trial {t} only in {before_path}" for t in sorted(set(before) - set(after))]
    problems += [f"trial {t} only in {after_path}" for t in sorted(set(after) - set(before))]
    for t in sorted(set(before) & set(after)):
        for column in RESULT_COLUMNS:
            if not _same(before[t].get(column), after[t].get(column)):
                problems.append(f"trial {t} {column}: {before[t].get(column)!r} -> {after[t].get(column)!r}")
    return problems


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] not in ("record", "compare"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "record":
        rows = record(argv[1], argv[2])
        print(f"{len(rows)} trials recorded in {argv[2]}")
        return 0
    problems = compare(argv[1], argv[2])
    print("\n".join(problems) if problems else f"identical: {len(json.load(open(argv[1])))} trials, "
                                                 f"{len(RESULT_COLUMNS)} result columns each")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

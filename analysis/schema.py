"""The Parquet contract of a result row: one schema, imported by the writer (sweep) and the reader (analysis).

Pure pyarrow, no torch or ray. Each field carries its meaning and unit in the field metadata
(``description``). New columns must be nullable so files written before them still load:
``conform`` fills any column a file lacks with nulls.

Score convention: ``accuracy`` is the accuracy of the evaluated model (retrained for roar/kar, the base
model for road/mif/lif) on the whole, identically modified test split; ``accuracy_drop`` is
``base_accuracy - accuracy``. For ROAR (MoRF) a larger drop means the method "found" more important pixels.
"""
from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

# (name, type, description). Order is the column order of every file.
_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    # identity: every field that changes a result
    ("trial_id", pa.string(), "sha256 prefix of the canonical JSON of the trial key"),
    ("sweep", pa.string(), "name of the sweep spec that produced the row"),
    ("dataset", pa.string(), "dataset registry key"),
    ("subset", pa.int64(), "train images used (null = all)"),
    ("model", pa.string(), "model registry key"),
    ("width", pa.int64(), "model width multiplier (channels of the first stage)"),
    ("attribution", pa.string(), "attribution registry key"),
    ("target", pa.string(), "requested target: 'predicted', 'label' (true label on train, prediction on test) or 'label_leaky' (true label on both: leaks the test label; for studying the leak only)"),
    ("target_train", pa.string(), "class the train-split maps explain: 'label' or 'predicted' (base model's argmax)"),
    ("target_test", pa.string(), "class the test-split maps explain: 'predicted' unless target is 'label_leaky' ('label': the test inputs depend on the test labels)"),
    ("reduction", pa.string(), "channel reduction of the map: sum, abs_sum, max, mean"),
    ("sign", pa.string(), "sign handling of the map: abs, positive, raw"),
    ("postprocess", pa.string(), "post-processing registry key applied to the map"),
    ("sigma", pa.float64(), "Gaussian blur sigma in pixels (0 = none)"),
    ("filter_size", pa.int64(), "max/mean filter size in pixels (0 = none)"),
    ("fraction", pa.float64(), "requested fraction of pixels removed: the top (MoRF: roar, road_morf, mif) or the bottom (LeRF: kar, road_lerf, lif) of the map"),
    ("protocol", pa.string(), "protocol registry key"),
    ("fill", pa.string(), "fill registry key for removed pixels"),
    ("selection", pa.string(), "'topk' (exactly k pixels) or 'percentile' (threshold, ties may add pixels)"),
    ("seed", pa.int64(), "seed of base model, tie-breaks, retrain"),
    ("retrain_mode", pa.string(), "'scratch' or 'finetune' (start from base weights)"),
    ("epochs", pa.int64(), "training epochs of base model and retrain"),
    ("study", pa.string(), "Optuna study name when the row came from a search, else null"),
    ("search_trial", pa.int64(), "Optuna trial number when the row came from a search, else null"),
    # outcome
    ("accuracy", pa.float64(), "test accuracy (fraction) of the evaluated model on the whole modified test split"),
    ("loss", pa.float64(), "mean cross-entropy on the modified test split (nats)"),
    ("base_accuracy", pa.float64(), "clean test accuracy of the base model (fraction)"),
    ("accuracy_drop", pa.float64(), "base_accuracy - accuracy (fraction)"),
    ("n_test", pa.int64(), "test images evaluated"),
    ("ci_low", pa.float64(), "95% Wilson interval of accuracy, lower bound"),
    ("ci_high", pa.float64(), "95% Wilson interval of accuracy, upper bound"),
    # leak diagnostics of retrain protocols (roar, kar): does the retrained model read the test label
    # from the mask? With a label-free test split it cannot beat the base model on the images it got wrong
    ("accuracy_base_wrong", pa.float64(), "accuracy (fraction) of the retrained model on the test images the base model misclassified (clean images); far above the random-map row at the same fraction = the masks carry the label"),
    ("n_base_wrong", pa.int64(), "test images the base model misclassified (the denominator of accuracy_base_wrong)"),
    ("agreement_base", pa.float64(), "fraction of test images on which the retrained model predicts the base model's class"),
    # curve protocols (mif/lif)
    ("auc", pa.float64(), "area under the accuracy-vs-fraction curve (mif/lif), fraction units"),
    ("fidelity", pa.float64(), "AUC(LIF) - AUC(MIF) for the same maps (mif/lif rows)"),
    ("curve_json", pa.string(), "JSON list of [fraction, accuracy] points of a curve protocol"),
    # metrics of the post-processed map and its mask (means over test images)
    ("removed_fraction_actual", pa.float64(), "measured fraction of pixels removed, mean over test images"),
    ("blur_spectral_centroid", pa.float64(), "power-weighted mean radial frequency of the map (cycles/pixel); lower = blurrier"),
    ("blur_total_variation", pa.float64(), "mean absolute neighbour difference of the min-max normalised map; lower = blurrier"),
    ("blur_hf_energy", pa.float64(), "share of spectral energy above 1/4 cycles/pixel; lower = blurrier"),
    ("mask_perimeter_area", pa.float64(), "boundary edges of the removed region / removed pixels"),
    ("mask_components", pa.float64(), "4-connected components of the removed region"),
    ("mask_morans_i", pa.float64(), "Moran's I of the binary mask (rook neighbours); 1 = clustered"),
    ("map_gini", pa.float64(), "Gini coefficient of the map's absolute values (sparsity)"),
    # diagnostics
    ("leakage_accuracy", pa.float64(), "test accuracy of a classifier given only the binary mask"),
    ("chance_accuracy", pa.float64(), "accuracy of always predicting the most frequent class"),
    ("sanity_rank_corr", pa.float64(), "Spearman rho between original maps and maps of the fully randomised model"),
    ("sanity_ssim", pa.float64(), "SSIM between original maps and maps of the fully randomised model"),
    ("sanity_passed", pa.bool_(), "true when the maps change under model randomisation"),
    ("detail_json", pa.string(), "JSON of protocol-specific detail (per-layer sanity, robustness per size, ...)"),
    ("groundtruth_precision", pa.float64(), "precision of the top-k pixels against the truly informative pixels (synthetic)"),
    # cost
    ("seconds_train", pa.float64(), "seconds spent training in the trial"),
    ("seconds_attribution", pa.float64(), "seconds spent computing or loading attribution maps"),
    ("seconds_mask", pa.float64(), "seconds spent post-processing, ranking, masking and metrics"),
    ("seconds_io", pa.float64(), "seconds spent reading/writing artifacts and rows"),
    ("seconds_total", pa.float64(), "wall seconds of the whole trial"),
    ("device", pa.string(), "torch device the trial ran on, e.g. 'cpu' or 'cuda:0 (NVIDIA H100)'"),
    # provenance
    ("roar_version", pa.string(), "roar-sweep package version"),
    ("code_version", pa.string(), "git commit of the code (or 'unknown')"),
    ("torch_version", pa.string(), "torch version"),
    ("host", pa.string(), "host name that ran the trial"),
    ("started_at", pa.timestamp("us", tz="UTC"), "trial start time"),
    ("finished_at", pa.timestamp("us", tz="UTC"), "trial end time"),
    ("config_json", pa.string(), "canonical JSON of the full trial key"),
    ("schema_version", pa.int64(), "version of this schema"),
    # status
    ("status", pa.string(), "'ok' or 'failed'"),
    ("error", pa.string(), "error type and message of a failed trial, else null"),
]

SCHEMA = pa.schema(
    [pa.field(name, dtype, nullable=True, metadata={"description": desc}) for name, dtype, desc in _COLUMNS]
)
COLUMNS: list[str] = [c[0] for c in _COLUMNS]
DESCRIPTIONS: dict[str, str] = {c[0]: c[2] for c in _COLUMNS}

IDENTITY_COLUMNS = [
    "trial_id", "sweep", "dataset", "subset", "model", "width", "attribution", "target", "reduction", "sign",
    "postprocess", "sigma", "filter_size", "fraction", "protocol", "fill", "selection", "seed",
    "retrain_mode", "epochs",
]
BLUR_COLUMNS = ["blur_spectral_centroid", "blur_total_variation", "blur_hf_energy"]
MASK_COLUMNS = ["mask_perimeter_area", "mask_components", "mask_morans_i", "map_gini"]
PROVENANCE_COLUMNS = ["roar_version", "code_version", "torch_version", "host", "started_at", "finished_at",
                      "device", "seconds_train", "seconds_attribution", "seconds_mask", "seconds_io",
                      "seconds_total"]
REQUIRED_COLUMNS = ["trial_id", "dataset", "attribution", "protocol", "fraction", "seed", "status"]
STATUSES = ("ok", "failed")


class SchemaError(ValueError):
    """A table does not match the contract; the message names the column, expected and found."""


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Build a table in the contract's column order from row dicts; absent keys become null.

    Unknown keys are an error (a typo in a writer must not silently drop a value).
    """
    unknown = sorted({k for r in rows for k in r} - set(COLUMNS))
    if unknown:
        raise SchemaError(f"unknown result column(s) {unknown}; valid columns are in analysis.schema.COLUMNS")
    arrays = [pa.array([r.get(f.name) for r in rows], type=f.type) for f in SCHEMA]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


# A row file's schema: the contract's without the per-column prose (compacted parts and the docs carry
# it); every row file has it, so the prose would be parsed again in each of a study's 10,000 footers.
ROW_FILE_SCHEMA = pa.schema([pa.field(f.name, f.type) for f in SCHEMA])


def encode_row_file(row: dict) -> bytes:
    """One row dict -> the bytes of a per-trial row file (unknown keys raise SchemaError).

    Written plain: a single row gains nothing from dictionary pages, compression or min/max statistics,
    and each costs time in every later read (a cold read of 10,000 row files: ~2.5x faster plain than
    zstd with dictionaries; the file is also smaller, 13 KB vs 20 KB)."""
    import pyarrow.parquet as pq   # here: the schema module stays importable without the Parquet reader

    sink = pa.BufferOutputStream()
    pq.write_table(rows_to_table([row]).cast(ROW_FILE_SCHEMA), sink, compression="none",
                   use_dictionary=False, write_statistics=False)
    return sink.getvalue().to_pybytes()


def conform(table: pa.Table) -> pa.Table:
    """Cast a table read from disk to the current schema: missing nullable columns become null,
    extra columns are dropped, types are cast. Raises SchemaError naming the column on a bad type
    or a missing required column."""
    missing_required = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing_required:
        raise SchemaError(f"missing required column(s) {missing_required}; found {table.column_names}")
    arrays = []
    for f in SCHEMA:
        if f.name in table.column_names:
            col = table.column(f.name)
            try:
                arrays.append(col.cast(f.type) if col.type != f.type else col)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaError(f"column {f.name!r}: expected {f.type}, found {col.type}") from exc
        else:
            arrays.append(pa.nulls(table.num_rows, type=f.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)

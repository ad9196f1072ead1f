"""Test tables over the registries: one row per post-processing. A new registry entry without a row
fails tests/test_registries.py::test_every_post_processing_has_a_case, so it is tested the moment it is
registered.

POSTPROCESS_CASES[name] = (sigma px, filter_size px, extra params) of one level that is NOT the raw
map (identity's own row is its only level).
"""
POSTPROCESS_CASES = {
    "identity": (0.0, 0, {}),
    "gaussian": (1.5, 0, {"edges": "reflect", "truncate": 4.0}),
    "max_filter": (0.0, 3, {}),
    "mean_filter": (0.0, 3, {}),
    "gamma": (0.0, 0, {"gamma": 2.0}),
    "quantize": (0.0, 0, {"levels": 4}),
    "blur_matched_random": (1.0, 0, {"edges": "replicate"}),
    "chain": (1.0, 0, {"steps": "gamma,gaussian", "gamma": 0.5}),
}

# A value outside each declared parameter's range (every parameter of analysis.contract).
INVALID_PARAM_VALUES = {"gamma": 0, "levels": 1, "edges": "wrap", "truncate": -1.0, "steps": "chain"}

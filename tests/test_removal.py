"""removal_mask: exact k, ranking invariants, MoRF/LeRF complements, seeded batch-independent ties."""
import numpy as np
import pytest
import torch

from roar.removal import (
    ORDERS, SELECTIONS, ascending_order, pixels_removed, removal_mask, removed_fraction, tiebreak_keys,
)

FRACTIONS = [0.0, 0.1, 0.25, 0.3, 0.5, 0.77, 0.9, 1.0]
SIZES = [(1, 1), (3, 5), (7, 7), (28, 28)]


def _maps(kind: str, n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "random":
        return torch.rand(n, h, w, generator=g)
    if kind == "constant":
        return torch.full((n, h, w), 0.3)
    if kind == "ties":  # three distinct values only
        return torch.randint(0, 3, (n, h, w), generator=g).to(torch.float32) / 2
    raise ValueError(kind)


def _reference_topk(maps: torch.Tensor, k: int) -> np.ndarray:
    """Looped reference: per image, the k largest values of distinct-valued maps."""
    out = np.zeros(maps.shape, dtype=bool)
    for n in range(maps.shape[0]):
        flat = maps[n].reshape(-1).tolist()
        top = sorted(range(len(flat)), key=lambda p: flat[p], reverse=True)[:k]
        for p in top:
            out[n].reshape(-1)[p] = True
    return out


@pytest.mark.parametrize("kind", ["random", "constant", "ties"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("order", sorted(ORDERS))
def test_exactly_k_removed(kind, size, order):
    maps = _maps(kind, 4, *size)
    n_pix = size[0] * size[1]
    for p in FRACTIONS:
        mask = removal_mask(maps, p, order=order, seed=3)
        assert mask.dtype == torch.bool and mask.shape == maps.shape
        k = pixels_removed(p, n_pix, order)
        assert abs(k - p * n_pix) <= 0.5
        assert mask.reshape(4, -1).sum(1).tolist() == [k] * 4


def test_k_rounding_examples():
    assert pixels_removed(0.5, 784) == 392
    assert pixels_removed(0.1, 784) == 78          # 78.4
    assert pixels_removed(0.25, 10, "morf") == 3   # exact half: up for morf
    assert pixels_removed(0.25, 10, "lerf") == 2   # and down for lerf
    assert pixels_removed(0.0, 5) == 0 and pixels_removed(1.0, 5) == 5


@pytest.mark.parametrize("size", SIZES)
def test_topk_matches_looped_reference(size):
    maps = _maps("random", 5, *size, seed=1)  # continuous values: no ties
    for p in FRACTIONS:
        k = pixels_removed(p, size[0] * size[1])
        np.testing.assert_array_equal(removal_mask(maps, p, "morf").numpy(), _reference_topk(maps, k))
        np.testing.assert_array_equal(removal_mask(maps, p, "lerf").numpy(),
                                      _reference_topk(-maps, pixels_removed(p, size[0] * size[1], "lerf")))


def test_removed_values_dominate_kept_values():
    maps = _maps("ties", 6, 9, 9)
    mask = removal_mask(maps, 0.4, "morf")
    for n in range(6):
        assert maps[n][mask[n]].min() >= maps[n][~mask[n]].max()


def test_rank_preserving_transform_leaves_mask_unchanged():
    # float64 so that x^3 + x stays strictly increasing after rounding.
    for kind in ["random", "ties"]:
        maps = _maps(kind, 4, 11, 13).to(torch.float64) - 0.4
        for p in [0.1, 0.5, 0.83]:
            for order in ORDERS:
                a = removal_mask(maps, p, order, seed=5)
                b = removal_mask(maps ** 3 + maps, p, order, seed=5)
                assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["random", "constant", "ties"])
def test_morf_and_lerf_are_exact_complements(kind):
    for size in [(3, 5), (10, 10), (28, 28)]:
        maps = _maps(kind, 3, *size)
        for p in [0.0, 0.05, 0.1, 0.25, 0.3, 0.5, 0.7, 0.95, 1.0]:
            morf = removal_mask(maps, p, "morf", seed=2)
            lerf = removal_mask(maps, 1 - p, "lerf", seed=2)
            assert torch.equal(morf, ~lerf), (kind, size, p)


def test_float32_and_float64_maps_give_the_same_mask():
    maps = _maps("ties", 3, 8, 8)
    maps[0, 0, 0] = -0.0
    maps[0, 0, 1] = 0.0
    for p in [0.2, 0.6]:
        assert torch.equal(removal_mask(maps, p, seed=4), removal_mask(maps.double(), p, seed=4))


def test_negative_values_and_infinities_rank_correctly():
    maps = torch.tensor([[[-3.0, float("-inf"), 2.0, -0.5, float("inf"), 0.0]]])
    assert removal_mask(maps, 2 / 6, "morf").reshape(-1).tolist() == [False, False, True, False, True, False]
    assert removal_mask(maps, 2 / 6, "lerf").reshape(-1).tolist() == [True, True, False, False, False, False]


def test_tiebreak_is_seeded_and_deterministic():
    maps = _maps("constant", 2, 10, 10)
    a = removal_mask(maps, 0.5, seed=1)
    assert torch.equal(a, removal_mask(maps, 0.5, seed=1))
    assert not torch.equal(a, removal_mask(maps, 0.5, seed=2))
    assert not torch.equal(a[0], a[1])  # different images break ties differently


def test_mask_independent_of_batch_composition():
    maps = _maps("ties", 6, 7, 9, seed=3)
    index = torch.tensor([10, 11, 12, 13, 14, 15])
    batch = removal_mask(maps, 0.45, seed=7, index=index)
    for i in range(6):
        alone = removal_mask(maps[i:i + 1], 0.45, seed=7, index=index[i:i + 1])
        assert torch.equal(alone[0], batch[i])
    shuffled = torch.tensor([4, 0, 5, 2])
    part = removal_mask(maps[shuffled], 0.45, seed=7, index=index[shuffled].numpy())
    assert torch.equal(part, batch[shuffled])
    # Default index is the position in the batch: image 10 alone is not image 0.
    assert torch.equal(removal_mask(maps[:2], 0.45, seed=7), removal_mask(maps[:2], 0.45, seed=7, index=[0, 1]))


def test_tiebreak_keys_are_distinct_within_an_image():
    keys = tiebreak_keys(0, torch.arange(4), 784)
    assert all(len(set(row.tolist())) == 784 for row in keys)
    assert keys.min() >= 0 and keys.max() < 2 ** 32


def test_ties_spread_evenly_over_the_image():
    # A constant map at 50%: every pixel removed in about half of many images (no positional bias).
    mask = removal_mask(torch.zeros(4000, 6, 6), 0.5, seed=0)
    rate = mask.float().mean(0)
    assert (rate - 0.5).abs().max() < 0.04  # binomial sd 0.008: 5 sd


def test_ascending_order_is_a_permutation_sorted_by_value():
    maps = _maps("ties", 3, 5, 6)
    order = ascending_order(maps, seed=1)
    assert torch.equal(torch.sort(order, dim=1).values, torch.arange(30).expand(3, 30))
    values = torch.gather(maps.reshape(3, -1), 1, order)
    assert (values[:, 1:] >= values[:, :-1]).all()


def test_percentile_removes_all_ties_and_removed_fraction_measures_it():
    maps = torch.tensor([[[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 2.0, 3.0]]])  # n = 8
    # p = 0.25 -> k = 2; the 2nd largest value is 2.0: no tie, exactly 2 removed.
    assert removal_mask(maps, 0.25, selection="percentile").sum() == 2
    # p = 0.5 -> k = 4; the threshold value 1.0 is shared by 4 pixels: 6 removed.
    mask = removal_mask(maps, 0.5, selection="percentile")
    assert mask.reshape(-1).tolist() == [False, False, True, True, True, True, True, True]
    assert removed_fraction(mask).tolist() == [0.75]
    assert removal_mask(maps, 0.5, selection="topk").sum() == 4
    lerf = removal_mask(maps, 0.25, "lerf", selection="percentile")
    assert lerf.reshape(-1).tolist() == [True, True, False, False, False, False, False, False]
    assert removal_mask(maps, 0.0, selection="percentile").sum() == 0
    assert set(SELECTIONS) == {"topk", "percentile"}


def test_removed_fraction():
    mask = torch.zeros(2, 4, 5, dtype=torch.bool)
    mask[0, :2] = True
    assert removed_fraction(mask).tolist() == [0.5, 0.0]


def test_numpy_maps_accepted():
    maps = _maps("random", 2, 4, 4)
    assert torch.equal(removal_mask(maps.numpy(), 0.5), removal_mask(maps, 0.5))


@pytest.mark.parametrize("kwargs, field", [
    ({"fraction": 1.5}, "fraction"), ({"fraction": -0.1}, "fraction"), ({"fraction": float("nan")}, "fraction"),
    ({"fraction": "0.5"}, "fraction"), ({"order": "mrof"}, "order"), ({"selection": "top"}, "selection"),
])
def test_invalid_arguments_name_the_field(kwargs, field):
    args = {"fraction": 0.5, **kwargs}
    with pytest.raises((ValueError, KeyError)) as info:
        removal_mask(torch.rand(1, 3, 3), **args)
    message = str(info.value)
    assert field in message and str(args[field]) in message


def test_invalid_maps_and_index():
    with pytest.raises(ValueError, match="shape"):
        removal_mask(torch.rand(3, 3), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        removal_mask(torch.tensor([[[float("nan"), 1.0]]]), 0.5)
    with pytest.raises(ValueError, match="index"):
        removal_mask(torch.rand(2, 3, 3), 0.5, index=[1, 2, 3])

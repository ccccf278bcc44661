import numpy as np
import pytest
import torch

from mrl.nesting import Nesting, truncate


def test_halving_matches_paper():
    assert Nesting.halving(2048).dims == (8, 16, 32, 64, 128, 256, 512, 1024, 2048)
    assert Nesting.halving(768).dims == (12, 24, 48, 96, 192, 384, 768)
    assert Nesting.halving(64, min_dim=4).dims == (4, 8, 16, 32, 64)


def test_default_weights_are_ones():
    assert Nesting((2, 4)).weights == (1.0, 1.0)


@pytest.mark.parametrize(
    "dims, weights, match",
    [
        ((), None, "nesting is empty"),
        ((8, 4), None, "strictly increasing, got 8 then 4"),
        ((8, 8), None, "strictly increasing"),
        ((0, 4), None, "must be positive, got 0"),
        ((-2, 4), None, "must be positive, got -2"),
        ((2.5, 4), None, "must be ints"),
        ((2, 4), (1.0,), "2 sizes but 1 weights"),
        ((2, 4), (1.0, -1.0), "weight for size 4 must be finite and >= 0"),
        ((2, 4), (1.0, float("nan")), "weight for size 4"),
    ],
)
def test_bad_nesting_is_named(dims, weights, match):
    with pytest.raises(ValueError, match=match):
        Nesting(dims, weights)


def test_last_size_must_equal_embedding():
    with pytest.raises(ValueError, match="ends at 32 but the embedding has 64 dims"):
        Nesting((8, 16, 32)).check_embed_dim(64)


def test_subset_and_index():
    n = Nesting((2, 4, 8), (3.0, 2.0, 1.0))
    assert n.subset([2, 8]) == Nesting((2, 8), (3.0, 1.0))
    with pytest.raises(ValueError, match="size 5 is not in the nesting"):
        n.index(5)


def test_dict_round_trip():
    n = Nesting((2, 4, 8), (3.0, 2.0, 1.0))
    assert Nesting.from_dict(n.to_dict()) == n


@pytest.mark.parametrize("to", [np.asarray, torch.as_tensor])
def test_truncate_normalizes_each_prefix(to):
    z = to(np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32))
    p = truncate(z, 4, normalize=True)
    assert tuple(p.shape) == (5, 4)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(p), axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(truncate(z, 4)), np.asarray(z)[:, :4])


def test_truncate_rejects_bad_dim():
    with pytest.raises(ValueError, match="prefix size 17 is outside 1..16"):
        truncate(np.zeros((2, 16)), 17)

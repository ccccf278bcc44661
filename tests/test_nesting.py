import numpy as np
import pytest
import torch

from mrl.errors import ConfigError
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
        ((0, 4), None, "nesting size must be >= 1, got 0"),
        ((-2, 4), None, "nesting size must be >= 1, got -2"),
        ((2.5, 4), None, r"nesting size must be an int, got 2.5 \(float\)"),
        ((np.float64(2.0), 4), None, r"nesting size must be an int, got np.float64\(2.0\)"),
        ((True, 4), None, "nesting size must be an int, got True"),
        ("8,16", None, r"nesting dims must be a sequence of ints, .* got '8,16' \(str\)"),
        (16, None, r"nesting dims must be a sequence of ints, .* got 16 \(int\)"),
        ((2, 4), (1.0,), "2 sizes but 1 weights"),
        ((2, 4), (1.0, -1.0), "nesting weight for size 4 must be a finite number in \\[0, inf\\]"),
        ((2, 4), (1.0, float("nan")), "nesting weight for size 4 must be a finite number"),
        ((2, 4), "12", "nesting weights must be a sequence of numbers, .* got '12'"),
        ((2, 4), (1.0, "2"), r"nesting weight for size 4 must be a number, got '2' \(str\)"),
    ],
)
def test_bad_nesting_is_named(dims, weights, match):
    with pytest.raises(ConfigError, match=match):
        Nesting(dims, weights)


def test_sizes_may_be_numpy_ints_or_a_list():
    assert Nesting(np.array([2, 4]), [1, 2]) == Nesting((2, 4), (1.0, 2.0))


@pytest.mark.parametrize(
    "embed_dim, min_dim, match",
    [
        ("64", 8, "embed_dim must be an int, got '64'"),
        (64, 8.0, "min_dim must be an int, got 8.0"),
        (8, 16, "min_dim 16 exceeds embed_dim 8"),
    ],
)
def test_bad_halving_is_named(embed_dim, min_dim, match):
    with pytest.raises(ConfigError, match=match):
        Nesting.halving(embed_dim, min_dim)


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


@pytest.mark.parametrize(
    "z, dim, error, message",
    [
        ([[1.0, 2.0]], 1, "InputError", "takes a NumPy array or a torch tensor"),
        (np.ones(4), 2, "InputError", r"2-D \[N, d\] array"),
        (np.ones((2, 4)), 1.5, "ConfigError", "prefix size must be an int, got 1.5"),
        (np.ones((2, 4)), 0, "ConfigError", r"prefix size must be in 1..4, got 0"),
        (torch.ones(2, 4), 5, "ConfigError", r"prefix size must be in 1..4, got 5"),
    ],
)
def test_bad_truncation_is_named(z, dim, error, message):
    import mrl.errors

    with pytest.raises(getattr(mrl.errors, error), match=message):
        truncate(z, dim)


@pytest.mark.parametrize("build", ["MRLHead", "MRLEHead", "loss", "embedding-loss"])
def test_a_list_where_a_nesting_is_needed_is_named_with_the_fix(build):
    import mrl

    make = {
        "MRLHead": lambda n: mrl.MRLHead(n, num_classes=3),
        "MRLEHead": lambda n: mrl.MRLEHead(n, num_classes=3),
        "loss": lambda n: mrl.MatryoshkaLoss(n),
        "embedding-loss": lambda n: mrl.MatryoshkaEmbeddingLoss(n, lambda a, b: (a * b).sum()),
    }[build]
    with pytest.raises(ConfigError, match=r"must be a Nesting, e.g. Nesting\(\(8, 16, 32\)\)"):
        make([8, 16])

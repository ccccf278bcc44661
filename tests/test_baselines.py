"""mrl.evaluation.baselines and probe: SVD vs numpy.linalg.svd, Rand-FS, linear probe vs sklearn."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mrl.evaluation.baselines import RandomFeatures, SVDProjection
from mrl.evaluation.probe import LinearProbe
from mrl.nesting import truncate


def correlated(seed=0, n=300, d=10):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 3.0).astype(np.float32)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_svd_reconstruction_equals_numpy_svd(k):
    X = correlated()
    svd = SVDProjection().fit(X)
    ours = svd.inverse_transform(truncate(svd.transform(X), k))
    mean = X.astype(np.float64).mean(0)
    U, S, Vt = np.linalg.svd(X - mean, full_matrices=False)
    ref = (U[:, :k] * S[:k]) @ Vt[:k] + mean
    np.testing.assert_allclose(ours, ref, atol=1e-3)
    np.testing.assert_allclose(svd.explained_variance_[:k], S[:k] ** 2 / (len(X) - 1), rtol=1e-4)


def test_svd_chunked_fit_matches_single_pass_and_prefixes_nest():
    X = correlated(1)
    a = SVDProjection(n_components=4).fit(X)
    b = SVDProjection(n_components=4, chunk_size=17).fit(X)
    np.testing.assert_allclose(a.components_, b.components_, atol=1e-5)
    np.testing.assert_allclose(
        a.transform(X)[:, :2], SVDProjection(n_components=2).fit(X).transform(X), atol=1e-4
    )


def test_svd_bad_input():
    with pytest.raises(ValueError, match="n_components=11 must be within 1..10"):
        SVDProjection(n_components=11).fit(correlated())
    X = correlated()
    X[7, 2] = np.nan
    with pytest.raises(ValueError, match="first bad row is 7"):
        SVDProjection().fit(X)


def test_random_features_are_seeded_nested_subsets():
    X = np.arange(40, dtype=np.float32).reshape(4, 10)
    a, b = RandomFeatures(seed=3).fit(X), RandomFeatures(seed=3).fit(X)
    np.testing.assert_array_equal(a.coords_, b.coords_)
    assert sorted(a.coords_) == list(range(10))
    assert not np.array_equal(a.coords_, RandomFeatures(seed=4).fit(X).coords_)
    np.testing.assert_array_equal(a.transform(X)[:, :3], X[:, a.coords_[:3]])


def test_linear_probe_matches_sklearn_logistic_regression():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 6)) * 2
    y = rng.integers(0, 4, 600)
    X = (centers[y] + rng.normal(size=(600, 6))).astype(np.float32)
    probe = LinearProbe(dims=(2, 6), l2=1e-3, chunk_size=128).fit(X, y)
    assert probe.decision_function(X).shape == (2, 600, 4)
    for g, m in enumerate((2, 6)):
        Z = truncate(X, m)
        Zs = (Z - Z.mean(0)) / Z.std(0)
        ref = LogisticRegression(C=1 / (1e-3 * len(X)), max_iter=1000).fit(Zs, y)
        agree = (probe.predict(X)[g] == ref.predict(Zs)).mean()
        assert agree > 0.99
        assert probe.score(X, y)[g] == pytest.approx(ref.score(Zs, y), abs=0.01)


def test_linear_probe_rejects_sizes_beyond_features():
    with pytest.raises(ValueError, match="need features with at least 8 dims"):
        LinearProbe(dims=(2, 8)).fit(np.zeros((10, 4), np.float32), np.arange(10) % 2)

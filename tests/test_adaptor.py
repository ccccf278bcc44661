"""MatryoshkaAdaptor: loss goes down, prefixes beat truncation (and PCA), save/load, bad input."""

import json

import numpy as np
import pytest
import torch

from mrl.adaptation.adaptor import MANIFEST, WEIGHTS, MatryoshkaAdaptor
from mrl.errors import (
    ConfigError,
    FormatError,
    InputError,
    MissingPathError,
    NotFittedError,
    PathError,
)
from mrl.evaluation.baselines import SVDProjection
from mrl.nesting import Nesting, truncate

NESTING = Nesting((4, 8, 16, 32, 64))


def clustered(n=2000, d=64, seed=0):
    """20 clusters over 8 directions + 16 decaying local directions, randomly rotated in 64-d.

    The information is spread over all 64 coordinates, so plain truncation is poor, and the
    top principal directions are the between-cluster ones, so PCA's small prefixes find the
    cluster but not the nearest neighbours inside it: room for a learned map to beat PCA.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, 8)) * 3.0
    local = rng.normal(size=(n, 16)) * (0.9 ** np.arange(16))
    z = np.concatenate([centres[rng.integers(0, 20, n)], local], 1)  # (n, 24)
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (z @ rotation[:24] + 0.05 * rng.normal(size=(n, d))).astype(np.float32)


def low_rank(n=2000, d=64, r=24, seed=0):
    """Gaussian data of rank 24 with a decaying spectrum, randomly rotated: PCA's home ground
    (for Gaussian data the top principal directions are the best linear prefixes)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, r)) * (0.85 ** np.arange(r))
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (z @ rotation[:r] + 0.05 * rng.normal(size=(n, d))).astype(np.float32)


def neighbours(z, k=10):
    """Indices of each row's k nearest other rows by cosine similarity (brute force)."""
    z = np.asarray(z, dtype=np.float64)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    s = z @ z.T
    np.fill_diagonal(s, -np.inf)
    return np.argsort(-s, axis=1)[:, :k]


def neighbour_recall(full, prefix, k=10):
    """Mean fraction of each row's k full-embedding neighbours found by the prefix's k."""
    a, b = neighbours(full, k), neighbours(prefix, k)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b, strict=True)]))


@pytest.fixture(scope="module")
def split():
    x = clustered()
    return x[:1500], x[1500:]


@pytest.fixture(scope="module")
def fitted(split):
    torch.set_num_threads(1)
    return MatryoshkaAdaptor(NESTING, epochs=3, progress=False).fit(split[0])


def test_unsupervised_loss_decreases(split, fitted):
    history = fitted.loss_history_
    assert len(history) == 3 and history[-1] < 0.8 * history[0], history
    # on held-out rows too, against the start (an adaptor that barely moved from PCA)
    start = MatryoshkaAdaptor(NESTING, epochs=1, lr=1e-12, progress=False).fit(split[0])
    assert fitted.objective(split[1]) < 0.8 * start.objective(split[1])


def test_starts_at_pca_rotate_then_truncate(split):
    x = split[0]
    start = MatryoshkaAdaptor(NESTING, epochs=1, lr=1e-12, progress=False).fit(x)
    pca = SVDProjection().fit(x)
    np.testing.assert_allclose(start.transform(x), pca.transform(x), atol=1e-4)


def recall_table(train, test, adaptor):
    """recall@10 of the full-embedding neighbours per size: truncation, PCA, adaptor."""
    pca = SVDProjection().fit(train).transform(test)
    adapted = adaptor.transform(test)
    table = {
        m: {
            "truncation": neighbour_recall(test, truncate(test, m)),
            "pca": neighbour_recall(test, truncate(pca, m)),
            "adaptor": neighbour_recall(test, truncate(adapted, m)),
        }
        for m in NESTING
    }
    print("\nrecall@10 of the full-embedding neighbours (500 held-out rows):")
    for m, row in table.items():
        print(m, " ".join(f"{k} {v:.3f}" for k, v in row.items()))
    return table


def test_prefixes_beat_truncation_and_pca(split, fitted):
    table = recall_table(*split, fitted)
    for m in (4, 8, 16, 32):
        assert table[m]["adaptor"] > table[m]["truncation"] + 0.05, (m, table[m])
    for m in NESTING:
        assert table[m]["adaptor"] >= table[m]["pca"] - 0.02, (m, table[m])
    for m in (4, 8):  # where PCA's top directions are the between-cluster ones
        assert table[m]["adaptor"] > table[m]["pca"] + 0.05, (m, table[m])


def test_on_pca_home_ground_the_adaptor_stays_near_pca_and_far_above_truncation():
    x = low_rank()
    train, test = x[:1500], x[1500:]
    adaptor = MatryoshkaAdaptor(NESTING, epochs=3, progress=False).fit(train)
    table = recall_table(train, test, adaptor)
    for m in (4, 8, 16, 32):
        assert table[m]["adaptor"] > table[m]["truncation"] + 0.1, (m, table[m])
    for m in NESTING:
        assert table[m]["adaptor"] >= table[m]["pca"] - 0.03, (m, table[m])


def test_same_seed_same_adaptor_and_residual_mlp_starts_at_pca(split):
    x = split[0][:512]
    kwargs = dict(nesting=NESTING, hidden=32, epochs=1, batch_size=128, progress=False)
    a = MatryoshkaAdaptor(**kwargs).fit(x).transform(x)
    b = MatryoshkaAdaptor(**kwargs).fit(x).transform(x)
    np.testing.assert_array_equal(a, b)
    start = MatryoshkaAdaptor(**{**kwargs, "lr": 1e-12}).fit(x)
    np.testing.assert_allclose(start.transform(x), SVDProjection().fit(x).transform(x), atol=1e-4)


def test_narrower_output_has_orthonormal_rows(split):
    x = split[0][:512]
    adaptor = MatryoshkaAdaptor(Nesting((4, 16)), out_dim=16, epochs=1, progress=False).fit(x)
    assert adaptor.transform(x).shape == (512, 16)
    w = adaptor.net_.linear.weight.detach()  # (16, 64)
    torch.testing.assert_close(w @ w.T, torch.eye(16), atol=1e-5, rtol=0)
    assert MatryoshkaAdaptor(epochs=1, progress=False).fit(x).nesting_.dims == (8, 16, 32, 64)


def test_supervised_pairs(split):
    rng = np.random.default_rng(1)
    q = split[0][:512]
    p = (q + 0.3 * rng.normal(size=q.shape)).astype(np.float32)
    adaptor = MatryoshkaAdaptor(NESTING, epochs=3, batch_size=128, progress=False).fit(q, p)
    assert adaptor.mode_ == "supervised"
    assert adaptor.loss_history_[-1] < adaptor.loss_history_[0]
    with pytest.raises(InputError, match=r"positives \(256, 64\) must have the shape"):
        MatryoshkaAdaptor(NESTING, progress=False).fit(q, p[:256])


@pytest.mark.parametrize("hidden", [0, 16])
def test_save_load_round_trip(tmp_path, split, hidden):
    x = split[0][:512]
    adaptor = MatryoshkaAdaptor(NESTING, hidden=hidden, epochs=1, progress=False).fit(x)
    adaptor.save(tmp_path / "a")
    loaded = MatryoshkaAdaptor.load(tmp_path / "a")
    np.testing.assert_array_equal(loaded.transform(split[1]), adaptor.transform(split[1]))
    assert loaded.nesting_ == adaptor.nesting_
    assert loaded.get_params() == {**adaptor.get_params(), "out_dim": 64}  # resolved
    assert loaded.loss_history_ == adaptor.loss_history_


@pytest.fixture
def saved(tmp_path, split):
    MatryoshkaAdaptor(NESTING, epochs=1, progress=False).fit(split[0][:256]).save(tmp_path / "a")
    return tmp_path / "a"


def _edit_manifest(folder, **changes):
    path = folder / MANIFEST
    manifest = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            del manifest[key]
        else:
            manifest[key] = value
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "damage, error, message",
    [
        (lambda f: (f / MANIFEST).write_text("{not json"), FormatError, "is not valid JSON"),
        (lambda f: _edit_manifest(f, format="mrl-embeddings"), FormatError, "not an mrl adaptor"),
        (lambda f: _edit_manifest(f, version=2), FormatError, "format version 2"),
        (lambda f: _edit_manifest(f, nesting=None), FormatError, "missing the key(s) 'nesting'"),
        (lambda f: _edit_manifest(f, d_in=128), FormatError, "has shape (64, 64) but"),
        (lambda f: _edit_manifest(f, out_dim=32), FormatError, "ends at 64 but the adapted"),
        (lambda f: _edit_manifest(f, nesting={"dims": [4, "x"]}), FormatError, "invalid values"),
        (
            lambda f: (f / WEIGHTS).write_bytes((f / WEIGHTS).read_bytes()[:100]),
            FormatError,
            "is not a whole mrl adaptor weights file",
        ),
        (lambda f: (f / WEIGHTS).write_text("hello"), FormatError, "not a whole mrl adaptor"),
        (lambda f: (f / WEIGHTS).unlink(), MissingPathError, "adaptor.pt is missing"),
        (lambda f: (f / MANIFEST).unlink(), MissingPathError, "manifest.json not found"),
    ],
    ids=[
        "not-json",
        "foreign",
        "version",
        "missing-key",
        "d-in-lie",
        "out-dim-lie",
        "bad-nesting",
        "truncated",
        "not-torch",
        "no-weights",
        "no-manifest",
    ],
)
def test_damaged_or_foreign_folder_is_named(saved, damage, error, message):
    damage(saved)
    with pytest.raises(error, match=None) as info:
        MatryoshkaAdaptor.load(saved)
    assert message in str(info.value), str(info.value)


def test_state_dict_of_another_architecture_is_named(tmp_path, split, saved):
    x = split[0][:256]
    MatryoshkaAdaptor(NESTING, hidden=8, epochs=1, progress=False).fit(x).save(tmp_path / "mlp")
    (saved / WEIGHTS).write_bytes((tmp_path / "mlp" / WEIGHTS).read_bytes())
    with pytest.raises(FormatError, match="unexpected .*mlp"):
        MatryoshkaAdaptor.load(saved)


def test_load_paths(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PathError, match="is a file"):
        MatryoshkaAdaptor.load(tmp_path / "file")
    with pytest.raises(MissingPathError, match="not found"):
        MatryoshkaAdaptor.load(tmp_path / "nowhere")


def test_transform_bad_inputs(fitted, split):
    with pytest.raises(InputError, match="have 32 dims but the adaptor was fitted on 64-dim"):
        fitted.transform(split[1][:, :32])
    with pytest.raises(InputError, match=r"have 0 rows .*at least 1 row"):
        fitted.transform(np.zeros((0, 64), np.float32))
    bad = split[1][:20].copy()
    bad[7, 3] = np.nan
    with pytest.raises(InputError, match="first bad row is 7"):
        fitted.transform(bad)
    with pytest.raises(InputError, match="floating point"):
        fitted.transform(np.zeros((3, 64), np.int64))
    with pytest.raises(InputError, match="2-D"):
        fitted.transform(np.zeros(64, np.float32))
    with pytest.raises(InputError, match="NumPy array"):
        fitted.transform([[0.0] * 64])
    with pytest.raises(NotFittedError, match="not fitted"):
        MatryoshkaAdaptor().transform(split[1])


def test_fit_bad_inputs(split):
    x = split[0][:64].copy()
    with pytest.raises(InputError, match="have 1 rows .*at least 2 rows"):
        MatryoshkaAdaptor(progress=False).fit(x[:1])
    x[5, 0] = np.inf
    with pytest.raises(InputError, match="first bad row is 5"):
        MatryoshkaAdaptor(progress=False).fit(x)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"epochs": 0}, "epochs must be >= 1, got 0"),
        ({"lr": 0.0}, "lr must be a finite number in (0"),
        ({"lr": -1e-3}, "lr must be a finite number in (0"),
        ({"hidden": -1}, "hidden (MLP width; 0 for a linear adaptor) must be >= 0, got -1"),
        ({"batch_size": 1}, "batch_size must be >= 2, got 1"),
        ({"temperature": 0.0}, "temperature must be a finite number in (0"),
        ({"out_dim": 65}, "out_dim (the adapted width, at most d = 64) must be in 1..64"),
        ({"rank_weight": 0.0, "sim_weight": 0.0}, "both 0"),
        ({"weight_decay": -1.0}, "weight_decay must be a finite number in [0"),
        ({"nesting": [8, 64]}, "nesting must be a Nesting"),
        ({"nesting": Nesting((8, 32))}, "ends at 32 but the adapted embeddings have 64 dims"),
        ({"nesting": Nesting((8, 32)), "out_dim": 16}, "end the nesting at 16"),
        ({"device": "bogus"}, "'bogus' is not a torch device"),
        ({"progress": "yes"}, "progress must be True or False"),
    ],
    ids=lambda v: str(v)[:30] if isinstance(v, dict) else None,
)
def test_bad_params_are_named(split, params, message):
    with pytest.raises(ConfigError) as info:
        MatryoshkaAdaptor(**params).fit(split[0][:64])
    assert message in str(info.value), str(info.value)

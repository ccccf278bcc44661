"""mrl.evaluation.embed / evaluate: on-disk layout, round trip, and bad input."""

import json

import numpy as np
import pytest
import torch

from mrl.data import InMemoryDataset
from mrl.evaluation.embed import embed_dataset, load_embeddings
from mrl.evaluation.evaluate import evaluate_embeddings, evaluate_sizes
from mrl.evaluation.probe import LinearProbe
from mrl.models import create_model
from mrl.nesting import Nesting, truncate


def tiny(seed=0, n=90, head="mrl", ff_dim=None):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = create_model("mlp", (1, 4, 4), Nesting((2, 4, 8)), 3, head=head, ff_dim=ff_dim)
    ds = InMemoryDataset(rng.normal(size=(n, 1, 4, 4)), rng.integers(0, 3, n), 3)
    return model, ds


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_embed_writes_memmappable_arrays_and_manifest(tmp_path, dtype):
    model, ds = tiny()
    out = embed_dataset(
        model,
        ds,
        tmp_path / "e",
        batch_size=32,
        dtype=dtype,
        save_logits=True,
        info={"split": "test"},
        progress=False,
    )
    s = load_embeddings(out)
    assert isinstance(s.embeddings, np.memmap) and s.embeddings.dtype == np.dtype(dtype)
    assert s.embeddings.shape == (90, 8) and s.labels.dtype == np.int64
    assert s.logits.shape == (3, 90, 3) and s.logits.dtype == np.float32
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dims"] == [2, 4, 8] and manifest["count"] == 90
    assert manifest["split"] == "test" and manifest["nesting"]["dims"] == [2, 4, 8]
    with torch.no_grad():
        z = model.eval().forward_features(ds.x)
        logits = model.forward_head(z)
    np.testing.assert_allclose(
        s.embeddings,
        z.numpy(),
        rtol=1e-3 if dtype == "float16" else 1e-6,
        atol=1e-3 if dtype == "float16" else 1e-6,
    )
    np.testing.assert_allclose(s.logits, logits.numpy(), atol=1e-5)
    np.testing.assert_array_equal(s.labels, ds.labels)
    assert not list(out.glob(".*.tmp"))


def test_evaluate_embeddings_reports_every_size_against_references(tmp_path):
    model, ds = tiny()
    train = load_embeddings(
        embed_dataset(model, ds, tmp_path / "tr", save_logits=True, progress=False)
    )
    test = load_embeddings(
        embed_dataset(model, tiny(1)[1], tmp_path / "te", save_logits=True, progress=False)
    )
    res = evaluate_embeddings(train, test, knn_ks=(1, 3), retrieval_ks=(5,))
    assert sorted(res) == [2, 4, 8] and "probe_top1" not in res[4]
    for g, m in enumerate((2, 4, 8)):
        # heads: plain argmax accuracy of the stored logits
        top1 = (np.argmax(test.logits[g], axis=1) == test.labels).mean()
        assert res[m]["top1"] == pytest.approx(top1)
        # 1-NN: brute force over the L2-normalised prefixes
        xb, xq = truncate(train.embeddings, m, True), truncate(test.embeddings, m, True)
        nearest = ((xq[:, None] - xb[None]) ** 2).sum(-1).argmin(1)
        assert res[m]["knn_1"] == pytest.approx((train.labels[nearest] == test.labels).mean())
    res = evaluate_embeddings(train, test, dims=[4], probe=True, knn_ks=(1,), retrieval_ks=(5,))
    probe = LinearProbe([4]).fit(train.embeddings, train.labels)
    assert list(res) == [4]
    assert res[4]["probe_top1"] == pytest.approx(probe.score(test.embeddings, test.labels)[0])


def test_size_not_in_model_nesting_is_a_clear_error(tmp_path):
    model, ds = tiny()
    s = load_embeddings(embed_dataset(model, ds, tmp_path / "e", progress=False))
    with pytest.raises(
        ValueError, match=r"size 3 does not match the model: choose from its head sizes \[2, 4, 8\]"
    ):
        evaluate_embeddings(s, s, dims=[3])


def test_train_and_test_from_different_models_is_an_error(tmp_path):
    model, ds = tiny()
    ff, _ = tiny(head="ff", ff_dim=4)
    a = load_embeddings(embed_dataset(model, ds, tmp_path / "a", progress=False))
    b = load_embeddings(embed_dataset(ff, ds, tmp_path / "b", progress=False))
    with pytest.raises(ValueError, match="come from different models"):
        evaluate_embeddings(a, b)


def test_label_file_of_different_length_is_a_clear_error(tmp_path):
    model, ds = tiny()
    out = embed_dataset(model, ds, tmp_path / "e", progress=False)
    np.save(out / "labels.npy", np.zeros(89, dtype=np.int64))
    with pytest.raises(ValueError, match="count is 90 but labels.npy has 89"):
        load_embeddings(out)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `mrl embed` first"):
        load_embeddings(tmp_path)


def test_size_larger_than_embedding_is_a_clear_error():
    z = np.zeros((10, 4), np.float32)
    y = np.arange(10) % 2
    with pytest.raises(
        ValueError, match=r"size 8 does not match the embeddings: choose from 1..4 \(their width\)"
    ):
        evaluate_sizes(z, y, z, y, [2, 8])


def test_nan_embeddings_name_the_first_bad_row():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 4)).astype(np.float32)
    q = z.copy()
    q[17, 2] = np.nan
    y = np.arange(50) % 2
    with pytest.raises(ValueError, match="first bad row is 17"):
        evaluate_sizes(z, y, q, y, [4], knn_ks=(1,), retrieval_ks=(5,))

"""mrl.evaluation.knn: agreement with scikit-learn and brute force; chunking; bad input."""

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from mrl.evaluation import knn, metrics
from mrl.nesting import truncate


def random_set(seed, n_db=400, n_q=120, d=16, classes=5):
    rng = np.random.default_rng(seed)
    db = rng.normal(size=(n_db, d)).astype(np.float32)
    q = rng.normal(size=(n_q, d)).astype(np.float32)
    return db, rng.integers(0, classes, n_db), q, rng.integers(0, classes, n_q)


@pytest.mark.parametrize("dim,k", [(4, 1), (4, 7), (16, 15)])
def test_knn_accuracy_equals_sklearn(dim, k):
    db, db_y, q, q_y = random_set(0)
    _, ids = knn.knn_search(db, q, k, dim=dim)
    ours = metrics.knn_accuracy(db_y[ids], q_y, k)
    clf = KNeighborsClassifier(n_neighbors=k, algorithm="brute")
    clf.fit(truncate(db, dim, normalize=True), db_y)
    theirs = clf.score(truncate(q, dim, normalize=True), q_y)
    assert ours == pytest.approx(theirs)


def test_search_equals_brute_force_on_normalised_prefixes():
    db, _, q, _ = random_set(1)
    D, ids = knn.knn_search(db, q, 10, dim=8)
    xb, xq = truncate(db, 8, normalize=True), truncate(q, 8, normalize=True)
    dist = ((xq[:, None, :] - xb[None, :, :]) ** 2).sum(-1)
    np.testing.assert_array_equal(ids, np.argsort(dist, axis=1)[:, :10])
    np.testing.assert_allclose(D, np.sort(dist, axis=1)[:, :10], atol=1e-5)


def test_chunked_and_unchunked_search_agree():
    db, db_y, q, q_y = random_set(2, n_db=1000)
    D1, I1 = knn.knn_search(db, q, 25, dim=12, chunk_size=len(db))
    D2, I2 = knn.knn_search(db, q, 25, dim=12, chunk_size=97)
    np.testing.assert_array_equal(I1, I2)
    np.testing.assert_allclose(D1, D2, atol=1e-6)
    m1 = knn.knn_metrics(db, db_y, q, q_y, 12, knn_ks=(1, 5), retrieval_ks=(10,))
    m2 = knn.knn_metrics(db, db_y, q, q_y, 12, knn_ks=(1, 5), retrieval_ks=(10,), chunk_size=97)
    assert m1 == m2
    assert set(m1) >= {"knn_1", "knn_5", "map_at_10_paper", "map_at_10", "recall_at_10"}


def test_float16_memmap_database(tmp_path):
    db, _, q, _ = random_set(3)
    path = tmp_path / "db.npy"
    np.save(path, db.astype(np.float16))
    mm = np.load(path, mmap_mode="r")
    _, ids = knn.knn_search(mm, q, 5, dim=16, chunk_size=64)
    _, ref = knn.knn_search(db.astype(np.float16).astype(np.float32), q, 5, dim=16)
    np.testing.assert_array_equal(ids, ref)


@pytest.mark.parametrize("k", [0, -3])
def test_nonpositive_k_is_an_error(k):
    db, _, q, _ = random_set(4)
    with pytest.raises(ValueError, match="k must be a positive int"):
        knn.knn_search(db, q, k)


def test_k_larger_than_database_is_an_error():
    db, _, q, _ = random_set(4, n_db=20)
    with pytest.raises(ValueError, match=r"k=21 exceeds the 20 database items available"):
        knn.knn_search(db, q, 21)


def test_size_larger_than_embedding_is_an_error():
    db, _, q, _ = random_set(4)
    with pytest.raises(ValueError, match="prefix size dim must be in 1..16, got 32"):
        knn.knn_search(db, q, 3, dim=32)


def test_nan_in_database_names_the_first_bad_row():
    db, _, q, _ = random_set(5)
    db[250, 3] = np.nan
    with pytest.raises(ValueError, match="database embeddings contain NaN.*first bad row is 250"):
        knn.knn_search(db, q, 3, chunk_size=100)


def test_embedding_and_label_lengths_must_match():
    db, db_y, q, q_y = random_set(6)
    with pytest.raises(ValueError, match="train embeddings has 400 rows but train labels has 399"):
        knn.knn_metrics(db, db_y[:-1], q, q_y, 4)


def test_knn_eval_benchmark_runs_small_and_writes_json(tmp_path, capsys):
    import json

    from bench_helpers import load_benchmark

    bench = load_benchmark("knn_eval")
    out = tmp_path / "knn.json"
    argv = ["--n-db", "300", "--dim", "8", "--n-queries", "20", "--k", "5", "--num-classes", "3"]
    argv += ["--sizes", "2", "8", "--bandwidth-gib", "0.001", "--extrapolate-to", "600"]
    assert bench.main([*argv, "--scratch", str(tmp_path), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["size"] for r in result["rows"]] == [2, 8] and result["n_db"] == 300
    for r in result["rows"]:
        assert r["seconds_at_extrapolated_n"] == pytest.approx(2 * r["seconds"])
    assert "| size | seconds | s at N=600 |" in capsys.readouterr().out

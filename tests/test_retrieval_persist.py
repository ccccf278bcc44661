"""Index persistence: atomic saves, checksums, and a manifest cross-checked field by field."""

import json

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from mrl.errors import FormatError, MissingPathError, PathError
from mrl.io import sha256_file
from mrl.retrieval.index import MatryoshkaIndex
from mrl.retrieval.plans import Rerank

N, D = 300, 32


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).standard_normal((N, D)).astype(np.float32)


def _version(folder):
    return folder / (folder / "CURRENT").read_text().strip()


def _edit_manifest(folder, fn):
    path = _version(folder) / "manifest.json"
    m = json.loads(path.read_text())
    fn(m)
    path.write_text(json.dumps(m))


def _forge(folder, name, array):
    """Replace `name` by `array` AND update its checksum: a lie only the cross-check can see."""
    version = _version(folder)
    np.save(version / name, array)
    size, digest = (version / name).stat().st_size, sha256_file(version / name)

    def fix(m):
        m["files"][name] = {"bytes": size, "sha256": digest}

    _edit_manifest(folder, fix)


@pytest.fixture(scope="module")
def hnsw(x):
    return MatryoshkaIndex(shortlist_dim=8).build(x)


@pytest.fixture
def saved(tmp_path, hnsw):
    hnsw.save(tmp_path / "idx")
    return tmp_path / "idx"


@pytest.fixture
def saved_ivf(tmp_path, x):
    MatryoshkaIndex(shortlist_dim=8, ann="ivf", ivf_lists=4).build(x).save(tmp_path / "ivf")
    return tmp_path / "ivf"


def test_round_trip_with_mmap_and_removed_rows(tmp_path, x):
    index = MatryoshkaIndex(shortlist_dim=8, dtype="float16").build(x, np.arange(N) * 3)
    index.remove([0, 3])
    before = index.search(x[:5], 4)
    index.save(tmp_path / "idx")
    for mmap in (False, True):
        loaded = MatryoshkaIndex.load(tmp_path / "idx", mmap=mmap)
        assert (loaded.count, loaded.dtype, loaded.shortlist_dim) == (N - 2, "float16", 8)
        assert_array_equal(loaded.ids, index.ids)
        assert_array_equal(loaded.search(x[:5], 4).ids, before.ids)


def test_atomic_save_survives_a_crash_between_files(tmp_path, x, monkeypatch):
    index = MatryoshkaIndex(shortlist_dim=8).build(x[:200])
    index.save(tmp_path / "idx")
    before = index.search(x[:5], 5).ids
    index.add(x[200:])
    calls = []
    real_save = np.save

    def crash(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:  # vectors.npy written, ids.npy not
            raise OSError("simulated crash mid-save")
        return real_save(*args, **kwargs)

    monkeypatch.setattr("mrl.retrieval.persist.np.save", crash)
    with pytest.raises(OSError, match="simulated crash"):
        index.save(tmp_path / "idx")
    monkeypatch.undo()
    old = MatryoshkaIndex.load(tmp_path / "idx")
    assert old.count == 200
    assert_array_equal(old.search(x[:5], 5).ids, before)
    visible = sorted(p.name for p in (tmp_path / "idx").iterdir() if not p.name.startswith("."))
    assert visible == ["CURRENT", "v000001"]
    assert not [p for p in (tmp_path / "idx").iterdir() if p.name.startswith(".staging")]


def test_checksum_mismatch_and_unverified_load(saved):
    path = _version(saved) / "vectors.npy"
    b = bytearray(path.read_bytes())
    b[-1] ^= 0xFF
    path.write_bytes(bytes(b))
    with pytest.raises(FormatError, match="checksum mismatch for vectors.npy"):
        MatryoshkaIndex.load(saved)
    MatryoshkaIndex.load(saved, verify=False)  # sizes still agree: loads unverified


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda v: (v / "ann.faiss").write_bytes(b"x" * 100), "ann.faiss has 100 bytes"),
        (lambda v: (v / "ids.npy").unlink(), "truncated index .* ids.npy is missing"),
        (lambda v: (v / "manifest.json").unlink(), "manifest.json is missing"),
        (lambda v: (v / "manifest.json").write_text("{not json"), "manifest.json is not JSON"),
        (
            lambda v: (v / "manifest.json").write_text('{"format": "other"}'),
            "is not an mrl index .*no 'mrl-matryoshka-index' format tag",
        ),
    ],
    ids=["truncated", "missing-file", "missing-manifest", "not-json", "foreign"],
)
def test_damaged_folder_is_refused_by_name(saved, damage, match):
    damage(_version(saved))
    with pytest.raises(FormatError, match=match):
        MatryoshkaIndex.load(saved)


def _set(key, value):
    def edit(m):
        target = m["index_params"] if key in m["index_params"] else m
        target[key] = value

    return edit


# One lie per manifest field: each edit alone (checksums untouched) must be refused by name.
LIES = [
    ("count", _set("count", N + 1), rf"'count' says {N + 1} but live.npy .* has {N}"),
    ("rows", _set("rows", N - 1), rf"'rows' says {N - 1} but vectors.npy \(rows\) has {N}"),
    ("dim", _set("dim", 16), rf"'dim' says 16 but vectors.npy \(columns\) has {D}"),
    ("shortlist_dim", _set("shortlist_dim", 4), r"'shortlist_dim' says 4 but ann.faiss \(d\)"),
    ("dtype", _set("dtype", "float16"), "'dtype' says 'float16' but vectors.npy has 'float32'"),
    ("ann", _set("ann", "flat"), "'index_params.ann' says 'flat' but ann.faiss has 'IndexHNSWF"),
    ("hnsw_m", _set("hnsw_m", 16), r"'index_params.hnsw_m' says 16 but ann.faiss \(M\) has 32"),
    ("ef_construction", _set("ef_construction", 80), "'index_params.ef_construction' says 80"),
    ("ef_search", _set("ef_search", 0), "ef_search must be in 1..1048576, got 0"),
    ("ivf_probe", _set("ivf_probe", -1), "ivf_probe must be in 1..1048576, got -1"),
    ("compact_at", _set("compact_at", 2.0), r"compact_at must be a finite number in \(0, 1\]"),
    ("metric", _set("metric", "l2"), "metric 'l2' is not"),
    ("count-float", _set("count", 300.0), "'count' must be an int, got 300.0"),
    ("dtype-unknown", _set("dtype", "float64"), "'dtype' says 'float64' but vectors.npy has"),
    ("format_version", _set("format_version", 99), "of format version 99; this mrl reads"),
    ("unknown-key", _set("extra", 1), r"unknown key\(s\) \['extra'\]"),
    ("norm_dims-order", _set("norm_dims", [32, 16]), "'norm_dims' must be increasing ints"),
    (
        "norm_dims-range",
        _set("norm_dims", [16, 64]),
        r"'norm_dims' must be increasing ints in 1..32",
    ),
    ("norm_dims-count", _set("norm_dims", [16]), r"norms.npy holds float32 of shape \(300, 2\)"),
]


@pytest.mark.parametrize("edit, match", [lie[1:] for lie in LIES], ids=[lie[0] for lie in LIES])
def test_a_manifest_lie_is_refused_by_name(saved, edit, match):
    _edit_manifest(saved, edit)
    with pytest.raises(FormatError, match=match):
        MatryoshkaIndex.load(saved)


def test_ivf_lists_lie(saved_ivf):
    _edit_manifest(saved_ivf, _set("ivf_lists", 8))
    with pytest.raises(FormatError, match="'index_params.ivf_lists' says 8 but ann.faiss has 4"):
        MatryoshkaIndex.load(saved_ivf)


@pytest.mark.parametrize(
    "key",
    [
        "count",
        "dtype",
        "rows",
        "dim",
        "shortlist_dim",
        "index_params",
        "files",
        "ann",
        "hnsw_m",
        "norm_dims",
    ],
)
def test_a_missing_manifest_key_is_named(saved, key):
    def drop(m):
        (m["index_params"] if key in m["index_params"] else m).pop(key)

    _edit_manifest(saved, drop)
    with pytest.raises(FormatError, match=f"missing the key\\(s\\) '{key}'"):
        MatryoshkaIndex.load(saved)


# Files replaced consistently (checksums updated): the arrays themselves must agree.
FORGERIES = [
    ("ids-int32", "ids.npy", np.arange(N, dtype=np.int32), "ids.npy holds int32 of shape"),
    ("ids-short", "ids.npy", np.arange(N - 1), rf"ids.npy holds int64 of shape \({N - 1},\)"),
    ("ids-negative", "ids.npy", np.arange(N) - 1, "ids.npy holds the negative id -1"),
    ("ids-repeated", "ids.npy", np.zeros(N, np.int64), "holds the live id 0 twice"),
    (
        "live-count",
        "live.npy",
        np.arange(N) % 2 == 0,
        rf"'count' says {N} but live.npy .* {N // 2}",
    ),
    ("vectors-f16", "vectors.npy", np.zeros((N, D), np.float16), "'dtype' says 'float32'"),
    ("vectors-1d", "vectors.npy", np.zeros(N, np.float32), "'dim' says 32 but vectors.npy"),
    ("norms-f64", "norms.npy", np.zeros((N, 2)), "norms.npy holds float64 of shape"),
    ("norms-rows", "norms.npy", np.zeros((N - 1, 2), np.float32), r"shape \(299, 2\), expected"),
]


@pytest.mark.parametrize(
    "name, array, match", [f[1:] for f in FORGERIES], ids=[f[0] for f in FORGERIES]
)
def test_a_forged_file_disagreeing_with_the_manifest_is_refused(saved, name, array, match):
    _forge(saved, name, array)
    with pytest.raises(FormatError, match=match):
        MatryoshkaIndex.load(saved)


def test_paths_that_are_not_index_folders(tmp_path, saved, x):
    with pytest.raises(PathError, match="is a file, not an index folder"):
        MatryoshkaIndex.load(_version(saved) / "ids.npy")
    with pytest.raises(MissingPathError, match="no such folder"):
        MatryoshkaIndex.load(tmp_path / "missing")
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(FormatError, match="no CURRENT file"):
        MatryoshkaIndex.load(folder)
    with pytest.raises(PathError, match="refusing to write into"):
        MatryoshkaIndex(shortlist_dim=8).build(x[:50]).save(folder)
    assert [p.name for p in folder.iterdir()] == ["cat.jpg"]


@pytest.mark.parametrize("ann", ["hnsw", "hnsw_sq8", "flat", "ivf", "ivf_sq8"])
def test_round_trip_of_every_ann_kind_keeps_results_and_norms(tmp_path, x, ann):
    index = MatryoshkaIndex(shortlist_dim=8, ann=ann, ivf_lists=4).build(x)
    before = index.search(x[:5], 4, Rerank(8, 32, 50))
    index.save(tmp_path / "idx")
    for mmap in (False, True):
        loaded = MatryoshkaIndex.load(tmp_path / "idx", mmap=mmap)
        assert type(loaded.ann_) is type(index.ann_)
        after = loaded.search(x[:5], 4, Rerank(8, 32, 50))
        assert_array_equal(after.ids, before.ids)
        assert_array_equal(after.scores, before.scores)
        norms = loaded.store_.cached_norms
        rescored = [8] if ann.endswith("_sq8") else []  # D_s, for re-scoring the codes' shortlist
        assert sorted(norms) == index.norm_dims == [*rescored, 16, 32]
        assert_array_equal(norms[32], index.store_.norms(32))


def test_a_version_1_folder_still_loads_and_computes_its_norms(saved, hnsw, x):
    """Folders written before stored norms (format version 1) load; norms come on first use."""
    (_version(saved) / "norms.npy").unlink()

    def to_v1(m):
        m["format_version"] = 1
        del m["norm_dims"], m["files"]["norms.npy"]

    _edit_manifest(saved, to_v1)
    loaded = MatryoshkaIndex.load(saved)
    assert loaded.store_.cached_norms == {}
    plan = Rerank(8, 32, 50)
    assert_array_equal(loaded.search(x[:5], 4, plan).ids, hnsw.search(x[:5], 4, plan).ids)
    np.testing.assert_allclose(loaded.store_.norms(32), hnsw.store_.norms(32), rtol=1e-6)

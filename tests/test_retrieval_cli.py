"""`mrl index build|tune` and `mrl search` end to end on tiny generated data, and bad input."""

import json

import numpy as np
import pytest

from mrl.data.generated import GeneratedNestedSpec, generated_nested_embeddings
from mrl.retrieval.index import MatryoshkaIndex

SPEC = GeneratedNestedSpec(dim=64, num_classes=10, seed=2)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """x/y/q/yq .npy files, an index folder built from x, and assorted hostile files."""
    d = tmp_path_factory.mktemp("cli")
    x, y = generated_nested_embeddings(1500, SPEC)
    q, yq = generated_nested_embeddings(20, SPEC, "queries")
    arrays = {
        "x": x,
        "y": y,
        "q": q,
        "yq": yq,
        "y_short": y[:-1],
        "y_long": np.r_[y, y[:3]],
        "empty": np.zeros((0, 64), np.float32),
        "flat": x[0],
        "ints": np.ones((5, 64), np.int64),
        "ids_neg": np.r_[np.arange(1499), -1],
        "ids_wrap": np.append(np.arange(1499, dtype=np.uint64), np.uint64(2**63)),
        "ids_float": np.arange(1500.0),
        "ids_dup": np.r_[np.arange(1499), 7],
    }
    for name, arr in arrays.items():
        np.save(d / f"{name}.npy", arr)
    (d / "text.npy").write_text("1,2,3\n")
    (d / "a_file").write_text("not a folder")
    (d / "a_folder").mkdir()
    MatryoshkaIndex(shortlist_dim=8).build(x).save(d / "idx")
    return d


def test_build_search_tune(files, tmp_path, cli):
    idx = tmp_path / "idx"
    built = cli(
        "index",
        "build",
        files / "x.npy",
        "--out",
        idx,
        "--shortlist-dim",
        "8",
        "--dtype",
        "float16",
    )
    assert built.code == 0, built.err
    out = tmp_path / "res.npz"
    r = cli(
        "search",
        idx,
        files / "q.npy",
        "--k",
        "5",
        "--plan",
        "rerank:8:64:100",
        "--out",
        out,
        "--mmap",
    )
    assert r.code == 0, r.err
    assert np.load(out)["ids"].shape == (20, 5) and not (tmp_path / "res.npz.npz").exists()
    tune = tmp_path / "tune.json"
    r = cli(
        "index", "tune", idx, files / "q.npy", "--target", "0.9", "--k", "5",
        "--query-labels", files / "yq.npy", "--id-labels", files / "y.npy",
        "--out", tune, "--efforts", "16,200",
    )  # fmt: skip
    assert r.code == 0, r.err
    tuned = json.loads(tune.read_text())
    assert f"cheapest plan reaching 0.9: {tuned['best_plan']}" in r.out
    assert {row["effort"] for row in tuned["table"]} == {None, 16, 200}  # exact plans: None
    # the chosen row is the fastest of those meeting the target, as the table itself says
    ok = [row for row in tuned["table"] if row["meets_target"]]
    fastest = min(ok, key=lambda row: row["latency_ms"])
    assert (tuned["best_plan"], tuned["best_effort"]) == (fastest["plan"], fastest["effort"])
    r = cli("index", "tune", idx, files / "q.npy", "--target", "0.9", "--k", "5", "--per-query",
            "--confidence", "0")  # fmt: skip
    assert r.code == 0, r.err
    assert " bound " in r.out and "cheapest plan reaching 0.9" in r.out


B = "index build {d}/x.npy --out {t}/i"
S = "search {d}/idx {d}/q.npy"
T = "index tune {d}/idx {d}/q.npy"
LABELS = "--query-labels {d}/yq.npy --id-labels"
# (name, argv with {d} = the fixture folder and {t} = tmp_path, fragments of the message)
BAD = [
    ("hnsw-m-0", f"{B} --hnsw-m 0", "hnsw_m must be in 2..256, got 0"),
    ("hnsw-m-neg", f"{B} --hnsw-m -5", "hnsw_m must be in 2..256, got -5"),
    ("ivf-lists-0", f"{B} --ann ivf --ivf-lists 0", "ivf_lists must be in 1..16777216, got 0"),
    ("ivf-lists-rows", f"{B} --ann ivf --ivf-lists 2000", "ivf_lists=2000 needs >= 2000 vectors"),
    ("ef-construction", f"{B} --ef-construction 0", "ef_construction must be in 1..1048576"),
    ("shortlist-dim", f"{B} --shortlist-dim 65", "shortlist_dim must be in 1..64, got 65"),
    ("build-out-file", "index build {d}/x.npy --out {d}/a_file", "a_file is a file; give a fold"),
    ("build-out-under", "index build {d}/x.npy --out {d}/a_file/i", "lies under the file"),
    ("vectors-empty", "index build {d}/empty.npy --out {t}/i", "empty.npy: vectors are empty"),
    ("vectors-1d", "index build {d}/flat.npy --out {t}/i", "vectors must be a 2-D array [N, D]"),
    ("vectors-text", "index build {d}/text.npy --out {t}/i", "text.npy is not a NumPy .npy file"),
    ("vectors-missing", "index build {d}/no.npy --out {t}/i", "no.npy does not exist"),
    ("ids-negative", f"{B} --ids {{d}}/ids_neg.npy", "ids: -1 at position 1499 is negative"),
    ("ids-uint64", f"{B} --ids {{d}}/ids_wrap.npy", f"ids: {2**63} at position 1499 is >= 2^63"),
    ("ids-float", f"{B} --ids {{d}}/ids_float.npy", "ids must be integers, got dtype float64"),
    ("ids-duplicate", f"{B} --ids {{d}}/ids_dup.npy", "duplicate id 7 at position 1499"),
    ("ids-count", f"{B} --ids {{d}}/y_short.npy", "got 1499 ids for 1500 vectors"),
    ("search-out-folder", f"{S} --out {{d}}/a_folder", "a_folder is a folder; give a file path"),
    ("search-out-under", f"{S} --out {{d}}/a_file/r.npz", "lies under the file"),
    ("search-k-0", f"{S} --k 0", "k must be a positive int (results per query), got 0"),
    ("search-k-big", f"{S} --k 2000 --plan single:64", "k=2000 exceeds the 1500 indexed vectors"),
    ("search-effort-0", f"{S} --effort 0", "effort must be in 1..1048576, got 0"),
    ("search-plan", f"{S} --plan single:8:exact", "cannot read plan 'single:8:exact'"),
    ("search-plan-dim", f"{S} --plan rerank:8:128:100", "uses dim 128 but the index has only 64"),
    ("queries-1d", "search {d}/idx {d}/flat.npy", "flat.npy: queries must be a 2-D array"),
    ("queries-empty", "search {d}/idx {d}/empty.npy", "empty.npy: queries are empty"),
    ("queries-int", "search {d}/idx {d}/ints.npy", "ints.npy: queries must be floating point"),
    ("vectors-int", "index build {d}/ints.npy --out {t}/i", "ints.npy: vectors must be floating"),
    ("queries-dim", "search {d}/idx {d}/ids_float.npy", "queries must be a 2-D array"),
    ("index-file", "search {d}/a_file {d}/q.npy", "a_file is a file, not an index folder"),
    ("index-missing", "search {d}/nope {d}/q.npy", "no such folder"),
    ("index-foreign", "search {d}/a_folder {d}/q.npy", "is not a versioned mrl folder"),
    ("tune-k-0", f"{T} --k 0", "k must be a positive int (results per query), got 0"),
    ("tune-target", f"{T} --target 0", "target must be a finite number in (0, 1]"),
    ("tune-efforts", f"{T} --efforts 8,x", "expects comma-separated ints like 16,32,64"),
    ("tune-few-ids", f"{T} {LABELS} {{d}}/y_short.npy", "id_labels has 1499 labels (too few)"),
    ("tune-many-ids", f"{T} {LABELS} {{d}}/y_long.npy", "id_labels has 1503 labels (too many)"),
    (
        "tune-query-labels",
        f"{T} --query-labels {{d}}/y.npy --id-labels {{d}}/y.npy",
        "query_labels has 1500 labels for 20 queries",
    ),
    ("tune-labels-alone", f"{T} --query-labels {{d}}/yq.npy", "give both --query-labels and"),
    ("tune-out-folder", f"{T} --out {{d}}/a_folder", "a_folder is a folder"),
    ("tune-confidence", f"{T} --confidence 0.3", "confidence must be a finite number in [0.5, 1]"),
    ("tune-confidence-1", f"{T} --confidence 1", "confidence must be below 1"),
]


@pytest.mark.parametrize("argv, fragment", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_cli_input_is_a_one_line_named_error(files, tmp_path, cli, argv, fragment):
    r = cli(*argv.format(d=files, t=tmp_path).split())
    r.assert_named_error(fragment)
    assert not (tmp_path / "i").exists()  # nothing written on a refused build

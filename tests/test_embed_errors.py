"""Hostile inputs to `mrl embed` / `mrl eval` and their API: a manifest lie per field,
damaged .npy files, output paths that cannot be folders, mismatched folders, bad sizes and k."""

import json
import shutil

import numpy as np
import pytest
import torch

from mrl.data import InMemoryDataset
from mrl.errors import ConfigError, FormatError, InputError, MissingPathError, PathError
from mrl.evaluation.embed import MANIFEST_KEYS, embed_dataset, load_embeddings
from mrl.evaluation.evaluate import evaluate_embeddings, evaluate_sizes
from mrl.models import create_model
from mrl.nesting import Nesting


def embed(out, dims=(2, 4, 8), seed=0, n=30):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = create_model("mlp", (1, 4, 4), Nesting(dims), 3)
    ds = InMemoryDataset(rng.normal(size=(n, 1, 4, 4)), rng.integers(0, 3, n), 3)
    return embed_dataset(model, ds, out, save_logits=True, progress=False)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("embeds")
    return {
        "train": embed(root / "train"),
        "test": embed(root / "test", seed=1),
        "wide": embed(root / "wide", dims=(2, 4, 16), seed=2),
    }


@pytest.fixture
def copy(folders, tmp_path):
    """A private copy of the embedded train folder, to damage."""
    return shutil.copytree(folders["train"], tmp_path / "e")


def edit_manifest(folder, **fields):
    manifest = json.loads((folder / "manifest.json").read_text())
    for key, value in fields.items():
        if key.startswith("files."):
            manifest["files"][key[6:]] = value
        elif value is KeyError:
            del manifest[key]
        else:
            manifest[key] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))


MANIFEST_LIES = [
    ({"count": 31}, r"count is 31 but embeddings.npy has 30 \(shape \(30, 8\)\)"),
    ({"count": 29}, "count is 29 but embeddings.npy has 30"),
    ({"count": "30"}, r"count is '30', expected an int >= 0"),
    ({"dtype": "float16"}, "dtype is 'float16' but embeddings.npy holds float32"),
    ({"dtype": "int8"}, "dtype is 'int8', expected one of"),
    ({"embed_dim": 4}, r"embed_dim is 4 but the nesting \[2, 4, 8\] ends at 8"),
    ({"nesting": {"dims": [2, 4, 16]}}, r"embed_dim is 8 but the nesting \[2, 4, 16\] ends at 16"),
    ({"nesting": {"dims": [4, 2, 8]}}, r"nesting .* is not valid"),
    ({"nesting": [2, 4, 8]}, r"nesting is \[2, 4, 8\], expected"),
    ({"dims": [2, 4]}, r"dims \[2, 4\] differ from the nesting \[2, 4, 8\] of an mrl head"),
    ({"dims": [2, 4], "head": "ff"}, r"len\(dims\) is 2 but logits.npy has 3"),
    ({"dims": [16], "head": "ff"}, r"dims \[16\] go beyond embed_dim 8"),
    ({"dims": "2,4,8"}, r"dims is '2,4,8', expected a list of positive ints"),
    ({"num_classes": 4}, "num_classes is 4 but logits.npy has 3"),
    ({"num_classes": 0}, "num_classes is 0, expected an int >= 1"),
    ({"files.embeddings": "../other.npy"}, "files.embeddings is '../other.npy', expected"),
    ({"files": "all"}, "files is 'all', expected an object"),
    *[({key: KeyError}, f"is missing the key\\(s\\) '{key}'") for key in MANIFEST_KEYS],
]


@pytest.mark.parametrize(
    "fields, match", MANIFEST_LIES, ids=lambda v: "" if isinstance(v, str) else str(v)
)
def test_a_manifest_lie_is_refused_naming_the_field(copy, fields, match):
    edit_manifest(copy, **fields)
    with pytest.raises(FormatError, match=match):
        load_embeddings(copy)


def test_labels_beyond_num_classes_are_refused(copy):
    np.save(copy / "labels.npy", np.full(30, 5, np.int64))
    with pytest.raises(InputError, match=r"labels.npy: label 5 is out of range for 3 classes"):
        load_embeddings(copy)


@pytest.mark.parametrize("name", ["embeddings.npy", "labels.npy", "logits.npy"])
@pytest.mark.parametrize("damage", ["truncate", "text", "missing"])
def test_a_damaged_array_file_is_named(copy, cli, folders, name, damage):
    path = copy / name
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-9])
        match, error = f"{name} is truncated: its header says shape", FormatError
    elif damage == "text":
        path.write_text("0.1 0.2 0.3\n")
        match, error = f"{name} is not a NumPy .npy file", FormatError
    else:
        path.unlink()
        match, error = f"{name} is missing; run `mrl embed` again", MissingPathError
    with pytest.raises(error, match=match):
        load_embeddings(copy)
    cli("eval", "--train", copy, "--test", folders["test"]).assert_named_error(name, "mrl embed")


def test_manifest_that_is_not_json_names_the_line(copy):
    (copy / "manifest.json").write_text('{"count": 30,\n "dtype": }')
    with pytest.raises(FormatError, match=r"manifest.json is not valid JSON \(line 2: "):
        load_embeddings(copy)


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_embed_out_that_cannot_be_a_folder(tmp_path, cli, where):
    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    out = blocker if where == "file" else blocker / "sub" / "e"
    with pytest.raises(PathError, match=f"cannot use {out} as the embeddings folder: .*is a file"):
        embed(out)
    # the CLI refuses before it loads the model (so no run folder is needed here)
    fragment = "is a file; give a folder" if where == "file" else f"lies under the file {blocker}"
    cli("embed", tmp_path / "run", "--out", out).assert_named_error(f"--out {out}", fragment)
    assert blocker.read_text() == "keep me"


@pytest.mark.parametrize("where", ["folder", "under-file"])
def test_eval_out_that_cannot_be_a_file(tmp_path, cli, folders, where):
    (tmp_path / "f").write_text("x")
    out = tmp_path if where == "folder" else tmp_path / "f" / "r.json"
    fragment = "is a folder; give a file path" if where == "folder" else "lies under the file"
    argv = ["eval", "--train", folders["train"], "--test", folders["test"], "--out", out]
    cli(*argv).assert_named_error(f"--out {out}", fragment)


def test_load_embeddings_of_a_file_or_nothing(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(PathError, match="is a file; give the folder"):
        load_embeddings(tmp_path / "f")
    with pytest.raises(MissingPathError, match="run `mrl embed` first"):
        load_embeddings(tmp_path / "none")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--test", "wide"], ["come from different models: width 8", "vs 16"]),
        (["--dims", "3"], ["size 3 does not match", "head sizes [2, 4, 8]"]),
        (["--dims", "16"], ["size 16 does not match", "head sizes [2, 4, 8]"]),
        (["--dims", "0"], ["size must be >= 1, got 0"]),
        (["--dims", "4", "4"], ["repeat a size"]),
        (["--knn-k", "0"], ["k must be a positive int", "got 0"]),
        (["--retrieval-k", "-3"], ["k must be a positive int", "got -3"]),
        (["--knn-k", "31"], ["k=31 exceeds the 30 train items"]),
        (["--knn-k", "1", "--retrieval-k", "5", "--chunk-size", "0"], ["chunk_size must be >= 1"]),
    ],
)
def test_eval_refuses_mismatches_before_any_work(cli, folders, args, fragments):
    argv = ["eval", "--train", folders["train"], "--test", folders["test"], *args]
    if args[:2] == ["--test", "wide"]:
        argv[4] = folders["wide"]
        argv = argv[:5]
    cli(*argv).assert_named_error(*fragments)


def test_evaluate_sizes_checks_widths_before_the_probe():
    z8, z4 = np.zeros((10, 8), np.float32), np.zeros((5, 4), np.float32)
    y = np.arange(10) % 2
    with pytest.raises(InputError, match=r"\(10, 8\) and test embeddings \(5, 4\) must be"):
        evaluate_sizes(z8, y, z4, y[:5], [4], probe=True)
    with pytest.raises(ConfigError, match="give at least one k"):
        evaluate_sizes(z8, y, z8, y, [4], knn_ks=(), retrieval_ks=())


def test_evaluate_embeddings_api_names_the_bad_size(folders):
    train, test = load_embeddings(folders["train"]), load_embeddings(folders["test"])
    with pytest.raises(ConfigError, match=r"size 5 does not match the model: choose from its head"):
        evaluate_embeddings(train, test, dims=[5])
    with pytest.raises(ConfigError, match="size must be an int, got 2.5"):
        evaluate_embeddings(train, test, dims=[2.5])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dtype": "float64"}, "dtype must be one of float32, float16, got 'float64'"),
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"batch_size": 1.5}, r"batch_size must be an int, got 1.5"),
    ],
)
def test_embed_parameters_are_checked_before_any_work(tmp_path, kwargs, match):
    model = create_model("mlp", (1, 4, 4), Nesting((2, 4)), 3)
    ds = InMemoryDataset(np.zeros((4, 1, 4, 4)), np.arange(4) % 3, 3)
    with pytest.raises(ConfigError, match=match):
        embed_dataset(model, ds, tmp_path / "e", progress=False, **kwargs)
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, r"k must be a positive int \(results per query\), got 0"),
        ({"k": 2.0}, "k must be a positive int"),
        ({"k": True}, "k must be a positive int"),
        ({"k": 2, "dim": 0}, "prefix size dim must be in 1..8, got 0"),
        ({"k": 2, "chunk_size": 0}, "chunk_size must be >= 1, got 0"),
    ],
)
def test_knn_search_parameters(kwargs, match):
    from mrl.evaluation.knn import knn_search

    z = np.random.default_rng(0).normal(size=(10, 8)).astype(np.float32)
    with pytest.raises(ConfigError, match=match):
        knn_search(z, z, **kwargs)
    with pytest.raises(InputError, match="database has 8 dims but queries have 4"):
        knn_search(z, z[:, :4], 1)

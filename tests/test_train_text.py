"""Text runs through `mrl train`: a tiny random BERT on small Debian-like and user corpora."""

import json
import random

import numpy as np
import pytest
import torch
from text_helpers import SECTIONS, text_config, write_debian
from training_helpers import same_weights

from mrl.data import LengthSortedBatches, columns_sort_key, load_text_splits
from mrl.errors import ConfigError, MissingPathError, PathError
from mrl.training import TrainConfig, load_model, train
from mrl.training.checkpoint import load_checkpoint

pytest.importorskip("transformers")


def write_yaml(path, config: TrainConfig, drop=("out_dir",)):
    import yaml

    values = {k: v for k, v in config.to_dict().items() if k not in drop}
    path.write_text(yaml.safe_dump(values))
    return path


def drop_timing(metrics):
    return {k: v for k, v in metrics.items() if k not in ("time_s", "examples_per_s")}


def test_cli_trains_and_resumes_exactly(tmp_path, cli, tiny_bert_path, debian_file, one_thread):
    # both objectives and a random subset of sizes per step: weights, losses, the size draws
    # and the length-sorted data order must all continue exactly
    base = text_config(
        tmp_path,
        tiny_bert_path,
        debian_file,
        classification_weight=1.0,
        n_dims_per_step=2,
        max_train_examples=64,
        rotation=True,
    )
    steps = 2 * 4  # 64 rows / batch 16 = 4 steps per epoch
    config = write_yaml(tmp_path / "c.yaml", base)
    r = cli("train", "--config", config, "--out_dir", tmp_path / "straight")
    assert r.code == 0, r.err
    assert "top-1 %  MRR@10 %" in r.out and f"step {steps}" in r.out
    assert [line.split()[0] for line in r.out.splitlines()[2:]] == ["8", "16", "32"]
    r = cli("train", "--config", config, "--out_dir", tmp_path / "resumed", "--max_steps=3")
    assert r.code == 0 and "step 3" in r.out, r.err
    r = cli("train", "--config", config, "--out_dir", tmp_path / "resumed", "--resume")
    assert r.code == 0 and f"step {steps}" in r.out, r.err

    straight, _ = load_model(tmp_path / "straight")
    resumed, config_back = load_model(tmp_path / "resumed")
    assert same_weights(straight, resumed)
    a, b = (load_checkpoint(tmp_path / n / "checkpoint.pt") for n in ("straight", "resumed"))
    assert drop_timing(a["metrics"]) == drop_timing(b["metrics"])  # train loss included
    assert set(a["metrics"]["mrr10"]) == set(a["metrics"]["top1"]) == {"8", "16", "32"}
    assert a["metrics"]["examples_per_s"] > 0
    assert config_back.is_text and config_back.classification_weight == 1.0
    # the rebuilt model is the run's: a tiny BERT backbone whose vectors moved in training
    texts = ["a python module", "an arcade game"]
    assert resumed.backbone.encode(texts).shape == (2, 32)
    assert resumed.head is not None and resumed.head_dims == (8, 16, 32)


@pytest.mark.parametrize(
    "weights",
    [(1.0, 0.0), (0.0, 1.0), (1.0, 0.5)],
    ids=["contrastive", "classification", "weighted-sum"],
)
def test_each_objective_lowers_the_loss(tmp_path, tiny_bert_path, debian_file, one_thread, weights):
    config = text_config(
        tmp_path,
        tiny_bert_path,
        debian_file,
        contrastive_weight=weights[0],
        classification_weight=weights[1],
        max_train_examples=32,
        epochs=4,
        warmup_epochs=0.0,
        head_lr=1e-2,
        schedule="linear",
    )
    result = train(config)
    lines = [json.loads(s) for s in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [m["train_loss"] for m in lines]
    assert losses[-1] < losses[0], losses
    assert ("mrr10" in result.metrics) == (weights[0] > 0)
    assert ("top1" in result.metrics) == (weights[1] > 0)
    assert result.examples_per_s == result.metrics["examples_per_s"] > 0


def test_user_pair_and_label_files_train(tmp_path, tiny_bert_path, one_thread, caplog):
    pairs, labelled = tmp_path / "pairs", tmp_path / "labelled"
    pairs.mkdir(), labelled.mkdir()
    rng = random.Random(0)
    for split, n in (("train", 32), ("test", 8)):
        with open(pairs / f"{split}.jsonl", "w") as f:
            for i in range(n):
                section = list(SECTIONS)[i % 4]
                q = " ".join(rng.choice(SECTIONS[section].split()) for _ in range(3))
                row = {"query": q, "positive": q + " more", "negative": f"other {i}"}
                f.write(json.dumps(row) + "\n")
        rows = [(SECTIONS[s], s) for s in (list(SECTIONS)[i % 4] for i in range(n))]
        (labelled / f"{split}.csv").write_text(
            "text,label\n" + "".join(f"{text} {i},{s}\n" for i, (text, s) in enumerate(rows))
        )
    kw = dict(max_seq_length=6, epochs=2)
    with caplog.at_level("WARNING"):
        result = train(
            text_config(tmp_path, tiny_bert_path, pairs, "p", dataset="text-pairs", **kw)
        )
    truncated = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert truncated == [  # counted once for the run, not again at each epoch's evaluation
        "5 of 96 training texts and 1 of 24 test texts are longer than max_seq_length=6 "
        "tokens and are truncated"
    ]
    assert set(result.metrics["mrr10"]) == {"8", "16", "32"} and "top1" not in result.metrics
    result = train(
        text_config(
            tmp_path, tiny_bert_path, labelled, "l", dataset="text-labels", head="mrl-e", **kw
        )
    )
    assert set(result.metrics["top1"]) == {"8", "16", "32"} and "mrr10" not in result.metrics


def test_max_train_examples_is_a_seeded_subset(debian_file):
    full, test = load_text_splits("debian", debian_file)
    a, _ = load_text_splits("debian", debian_file.parent, max_train_examples=20, seed=3)
    b, _ = load_text_splits("debian", debian_file, max_train_examples=20, seed=3)
    c, _ = load_text_splits("debian", debian_file, max_train_examples=20, seed=4)
    assert len(a) == 20 and a.texts == b.texts and a.texts != c.texts
    assert set(a.queries) <= set(full.queries)
    assert np.array_equal(a.labels, full.labels[[full.texts.index(t) for t in a.texts]])
    assert not set(full.queries) & set(test.queries)  # split by source: no pair on both sides


def test_length_sorted_batches_are_deterministic_and_cover_each_row_once():
    lengths = np.random.default_rng(0).integers(1, 200, size=1000)
    batches = LengthSortedBatches(lengths, 32, shuffle=True, seed=5, chunk_batches=8)
    epoch = batches.global_batches(2)
    again = LengthSortedBatches(lengths, 32, shuffle=True, seed=5, chunk_batches=8)
    assert all(np.array_equal(x, y) for x, y in zip(epoch, again.global_batches(2), strict=True))
    assert not np.array_equal(epoch[0], batches.global_batches(3)[0])  # a new order per epoch
    rows = np.concatenate(epoch)
    assert len(epoch) == len(batches) == 32 and np.array_equal(np.sort(rows), np.arange(1000))
    # sorting cuts padding: the longest row per batch sums to far less than in random batches
    random_batches = np.random.default_rng(0).permutation(1000)[: 31 * 32].reshape(31, 32)
    padded = sum(lengths[b].max() * len(b) for b in epoch[:-1] if len(b) == 32)
    assert padded < 0.75 * sum(lengths[b].max() * 32 for b in random_batches)
    # drop_last: equal batches, each row at most once; resuming skips exactly the batches taken
    dropped = LengthSortedBatches(lengths, 32, shuffle=True, drop_last=True, seed=5)
    full = dropped.global_batches(0)
    assert len(full) == 31 and {len(b) for b in full} == {32}
    assert len(np.unique(np.concatenate(full))) == 31 * 32
    assert all(
        np.array_equal(x, y) for x, y in zip(full[4:], dropped.iter_batches(0, 4), strict=True)
    )
    # ranks: the union of their shards is the global batch
    shards = [
        list(
            LengthSortedBatches(
                lengths, 32, shuffle=True, drop_last=True, seed=5, rank=r, world_size=4
            ).iter_batches(0)
        )
        for r in range(4)
    ]
    for i, batch in enumerate(full):
        assert np.array_equal(np.sort(np.concatenate([s[i] for s in shards])), np.sort(batch))


def test_columns_sort_key_orders_by_the_longest_column_first_and_cuts_padding():
    rng = np.random.default_rng(0)
    short = rng.integers(5, 30, size=2000)  # queries: short, varied
    long = np.minimum(rng.integers(10, 120, size=2000), 64)  # documents: many at the cap
    key = columns_sort_key([short, long])
    order = np.argsort(key, kind="stable")
    pairs = list(zip(long[order], short[order], strict=True))
    assert pairs == sorted(pairs)  # lexicographic: documents' length, then queries'

    def slots(lengths) -> int:  # token slots of batches of 32, each column padded on its own
        batches = list(
            LengthSortedBatches(lengths, 32, shuffle=True, drop_last=True).iter_batches()
        )
        return sum(len(b) * (short[b].max() + long[b].max()) for b in batches)

    assert slots(key) < 0.97 * slots(short + long) < 0.97 * slots(np.zeros(2000))
    with pytest.raises(ConfigError, match="at least one column"):
        columns_sort_key([])


def test_config_resolves_the_text_recipe():
    text = TrainConfig(dataset="debian", backbone="text", embed_dim=384, min_dim=12)
    assert (text.optimizer, text.lr, text.head_lr, text.warmup_epochs) == ("adamw", 2e-5, 1e-3, 0.1)
    assert (text.contrastive_weight, text.classification_weight) == (1.0, 0.0)
    vision = TrainConfig()
    assert (vision.optimizer, vision.lr, vision.head_lr, vision.classification_weight) == (
        "sgd",
        0.1,
        None,
        1.0,
    )
    assert TrainConfig.from_dict(text.to_dict()) == text
    with pytest.raises(ConfigError, match="n_dims_per_step .* must be in 1..6, got 7"):
        TrainConfig(dataset="debian", backbone="text", embed_dim=384, min_dim=12, n_dims_per_step=7)


GOOD = json.dumps({"query": "a query", "positive": "a document"})


@pytest.mark.parametrize(
    "argv, line, fragments",
    [
        (
            ["--embed_dim=64", "--nesting=[16,64]"],
            GOOD,
            ["embed_dim 64 (the nesting's last size) must equal the width 32 of text model"],
        ),
        (["--text_model=DATA"], GOOD, ["is not a Hugging Face model folder (no config.json)"]),
        ([], '{"query": "q"}', ["train.jsonl:2: missing field 'positive'"]),
        ([], '{"query": " ", "positive": "p"}', ["train.jsonl:2: field 'query' is empty"]),
        (
            [],
            '{"query": "q", "positive": "p", "negative": "n"}',
            ["train.jsonl: some records have a negative and some do not"],
        ),
        (["--data_root=null"], GOOD, ["dataset text-pairs needs data_root"]),
        (
            ["--dataset=digits", "--backbone=mlp"],
            GOOD,
            ["text_model applies to backbone 'text' only (backbone is 'mlp')"],
        ),
        (
            ["--dataset=digits", "--backbone=mlp", "--text_model=null", "--rotation=true"],
            GOOD,
            ["rotation applies to backbone 'text' only (backbone is 'mlp')"],
        ),
        (["--dataset=digits"], GOOD, ["backbone 'text' reads a text dataset", "not 'digits'"]),
        (
            ["--dataset=debian", "--backbone=mlp", "--text_model=null"],
            GOOD,
            ["dataset 'debian' holds texts; set backbone: text"],
        ),
        (
            ["--dataset=text-labels", "--contrastive_weight=1"],
            GOOD,
            ["contrastive_weight 1 needs pairs, and dataset 'text-labels' has none"],
        ),
        (["--classification_weight=1"], GOOD, ["classification_weight 1 needs labels"]),
        (
            ["--contrastive_weight=0"],
            GOOD,
            ["contrastive_weight and classification_weight are both 0"],
        ),
        (
            [],
            GOOD,
            ["text-pairs train split has 2 rows, fewer than batch_size 16; lower batch_size"],
        ),
    ],
    ids=[
        "width",
        "not-a-model",
        "missing-field",
        "empty-string",
        "mixed-negatives",
        "no-data-root",
        "text-model-on-vision",
        "rotation-on-vision",
        "text-backbone-on-vision",
        "vision-backbone-on-text",
        "contrastive-without-pairs",
        "classification-without-labels",
        "nothing-to-train",
        "too-few-rows",
    ],
)
def test_bad_text_runs_are_named_errors(tmp_path, cli, tiny_bert_path, argv, line, fragments):
    data = tmp_path / "pairs"
    data.mkdir()
    (data / "train.jsonl").write_text(f"{GOOD}\n{line}\n")
    (data / "test.jsonl").write_text(f"{GOOD}\n{GOOD}\n")
    base = [
        "--backbone=text",
        "--dataset=text-pairs",
        f"--data_root={data}",
        f"--text_model={tiny_bert_path}",
        "--embed_dim=32",
        "--nesting=[8,16,32]",
        "--batch_size=16",
        "--progress=false",
        f"--out_dir={tmp_path / 'run'}",
    ]
    argv = [a.replace("DATA", str(data)) for a in argv]
    cli("train", *base, *argv).assert_named_error(*fragments)


def test_text_backbone_grads_reach_every_parameter(tiny_bert_path):
    from mrl.models import create_text_model
    from mrl.nesting import Nesting

    model = create_text_model(tiny_bert_path, Nesting((8, 16, 32)), num_classes=3)
    tokens = model.backbone.tokenize(["a python module", "an arcade game with levels"])
    out = model(tokens)
    assert out.shape == (3, 2, 3) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.fixture
def debian_file(tmp_path):
    return write_debian(tmp_path / "debian-packages.jsonl.gz")


@pytest.mark.parametrize(
    "name, layout, error, match",
    [
        ("text-pairs", {"train.jsonl": GOOD}, MissingPathError, r"data_root .*: no test file"),
        (
            "text-pairs",
            {"train.jsonl": GOOD, "train.csv": "query,positive\nq,p\n", "test.jsonl": GOOD},
            PathError,
            "several train files; expected exactly one of train.jsonl, train.csv",
        ),
        ("text-labels", "a file", PathError, "is a file; give the folder holding train"),
        ("debian", {}, MissingPathError, "no debian-packages.jsonl.gz there"),
        ("imdb", {}, ConfigError, "unknown text dataset 'imdb'; choose one of debian"),
    ],
    ids=["missing-split", "two-train-files", "root-is-a-file", "no-debian-file", "unknown"],
)
def test_text_set_layout_errors(tmp_path, name, layout, error, match):
    root = tmp_path / "root"
    if isinstance(layout, str):
        root.write_text(layout)
    else:
        root.mkdir()
        for file, text in layout.items():
            (root / file).write_text(text + "\n")
    with pytest.raises(error, match=match):
        load_text_splits(name, root)


def test_labelled_test_file_uses_the_training_classes(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\na game,games\nsome lib,libs\n")
    (tmp_path / "test.csv").write_text("text,label\nanother lib,libs\n")
    train, test = load_text_splits("text-labels", tmp_path)
    assert train.classes == test.classes == ("games", "libs") and test.labels.tolist() == [1]
    assert train.queries is None and train.columns().keys() == {"text"}

"""`mrl cascade` straight from a text run folder: the section head's per-size logits."""

import json

import numpy as np
import pytest
from text_helpers import text_config, write_debian

from mrl.training import run_logits, train

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_bert_path):
    """A tiny BERT trained with a section head (and one without) on a Debian-like corpus."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("text-cascade")
    data = write_debian(tmp / "debian-packages.jsonl.gz", n=300)
    kw = dict(epochs=2, max_train_examples=64, head_lr=1e-2)
    head = train(text_config(tmp, tiny_bert_path, data, "head", classification_weight=1.0, **kw))
    plain = train(text_config(tmp, tiny_bert_path, data, "plain", **kw))
    torch.set_num_threads(threads)
    return head.run_dir, plain.run_dir


def test_run_logits_score_the_whole_test_split(runs):
    scores = run_logits(runs[0])
    g, n, c = scores.logits.shape
    assert (g, c) == (3, 4) and scores.head_dims == (8, 16, 32) and scores.head == "mrl"
    assert n == len(scores.labels) > 40 and np.isfinite(scores.logits).all()
    # the same model, the same rows: the run's own top-1 of its (capped) epoch evaluation
    metrics = json.loads((runs[0] / "metrics.jsonl").read_text().splitlines()[-1])
    top1 = (scores.logits.argmax(axis=2) == scores.labels).mean(axis=1)
    logged = np.array([metrics["top1"][m] for m in ("8", "16", "32")])
    np.testing.assert_allclose(top1, logged, atol=1.5 / n)  # padding may flip a near tie


def test_cascade_reads_a_text_run_folder(runs, cli, tmp_path):
    thresholds = tmp_path / "t.json"
    options = ["--splits=3", "--grid=16", "--save-thresholds", thresholds, "--target-dim=32"]
    r = cli("cascade", runs[0], *options, "--out", tmp_path / "report")
    assert r.code == 0, r.err
    assert thresholds.is_file() and (tmp_path / "report" / "cascade.json").is_file()
    report = json.loads((tmp_path / "report" / "cascade.json").read_text())
    assert report["settings"]["logits"] == str(runs[0])


def test_cascade_of_a_run_without_head_is_a_named_error(runs, cli):
    cli("cascade", runs[1]).assert_named_error(
        "has no classification head (trained with classification_weight 0)",
        "train with classification_weight > 0",
    )

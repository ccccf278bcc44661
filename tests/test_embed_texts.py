"""mrl embed --texts: text files -> the usual embeddings folder, equal to the exported model's."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("sentence_transformers")

from sentence_transformers import SentenceTransformer  # noqa: E402

from mrl.evaluation.embed import load_embeddings  # noqa: E402
from mrl.models.text import default_text_model_path  # noqa: E402

TEXTS = ["a text editor", "Real-time strategy game of ancient warfare", "JSON parser library"]


def test_mrl_embed_and_the_exported_folder_give_the_same_vectors_at_every_size(
    tmp_path, cli, one_thread
):
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    model = default_text_model_path()
    assert cli("embed", model, "--texts", tmp_path / "texts.txt", "--out", tmp_path / "e").code == 0
    assert cli("export", model, "--out", tmp_path / "st").code == 0
    data = load_embeddings(tmp_path / "e")
    assert data.labels is None and data.embeddings.shape == (3, 384)
    assert data.nesting.dims == (12, 24, 48, 96, 192, 384)
    for m in data.nesting:
        st = SentenceTransformer(str(tmp_path / "st"), device="cpu", truncate_dim=m)
        assert np.abs(st.encode(TEXTS) - data.embeddings[:, :m]).max() <= 1e-5


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_labelled_texts_go_through_mrl_eval(tmp_path, tiny_bert_path, cli):
    rows = [
        {"text": f"{word} tool number {i}", "label": word}
        for i in range(12)
        for word in ("editor", "game", "library")
    ]
    for split in ("train", "test"):
        path = _jsonl(tmp_path / f"{split}.jsonl", rows)
        r = cli(
            "embed",
            tiny_bert_path,
            "--texts",
            path,
            "--out",
            tmp_path / split,
            "--nesting",
            "8,16,32",
        )
        assert r.code == 0, r.err
    data = load_embeddings(tmp_path / "train")
    assert data.manifest["classes"] == ["editor", "game", "library"]
    np.testing.assert_array_equal(data.labels[:3], [0, 1, 2])
    r = cli(
        "eval",
        "--train",
        tmp_path / "train",
        "--test",
        tmp_path / "test",
        "--knn-k",
        "1",
        "--retrieval-k",
        "10",
    )
    assert r.code == 0, r.err
    assert r.out.splitlines()[2].startswith("| 8 |")


def test_a_folder_without_labels_is_named_where_labels_are_needed(tmp_path, tiny_bert_path, cli):
    (tmp_path / "t.txt").write_text("one text\nanother text\n")
    for split in ("a", "b"):
        assert (
            cli(
                "embed", tiny_bert_path, "--texts", tmp_path / "t.txt", "--out", tmp_path / split
            ).code
            == 0
        )
    cli("eval", "--train", tmp_path / "a", "--test", tmp_path / "b").assert_named_error(
        "has no labels", "needs them"
    )


@pytest.mark.parametrize(
    "name, content, fragments",
    [
        ("empty-line.txt", b"one\n\nthree\n", ["empty-line.txt:2: empty line"]),
        ("latin1.txt", b"ok\ncaf\xe9\n", ["latin1.txt:2: not valid UTF-8"]),
        ("nothing.txt", b"\n", ["holds no texts"]),
        (
            "half.jsonl",
            b'{"text": "a", "label": "x"}\n{"text": "b"}\n',
            ["half.jsonl:2: missing field 'label'"],
        ),
        ("texts.pdf", b"%PDF", ["unknown extension"]),
    ],
)
def test_bad_text_files_are_named_by_file_and_line(
    tmp_path, tiny_bert_path, cli, name, content, fragments
):
    (tmp_path / name).write_bytes(content)
    cli(
        "embed", tiny_bert_path, "--texts", tmp_path / name, "--out", tmp_path / "e"
    ).assert_named_error(*fragments)
    assert not (tmp_path / "e" / "manifest.json").exists()


def test_a_nesting_that_does_not_end_at_the_width_is_named(tmp_path, tiny_bert_path, cli):
    (tmp_path / "t.txt").write_text("one text\n")
    cli(
        "embed",
        tiny_bert_path,
        "--texts",
        tmp_path / "t.txt",
        "--out",
        tmp_path / "e",
        "--nesting",
        "8,64",
    ).assert_named_error("ends at 64 but the embedding has 32 dims")


def test_mrl_embed_of_a_trained_text_run_gives_its_encoder_vectors(
    tmp_path, tiny_bert_path, cli, one_thread
):
    from text_helpers import text_config, write_debian

    from mrl.training import load_model, train

    data = write_debian(tmp_path / "debian-packages.jsonl.gz", n=80)
    run = train(text_config(tmp_path, tiny_bert_path, data, epochs=1, max_train_examples=32))
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    r = cli("embed", run.run_dir, "--texts", tmp_path / "texts.txt", "--out", tmp_path / "e")
    assert r.code == 0, r.err
    model, _ = load_model(run.run_dir)
    got = load_embeddings(tmp_path / "e")
    np.testing.assert_array_equal(got.embeddings, model.backbone.encode(TEXTS))
    assert got.nesting.dims == (8, 16, 32)
    r = cli("embed", run.run_dir, "--split", "test", "--out", tmp_path / "split")
    assert r.code == 0, r.err
    assert load_embeddings(tmp_path / "split").labels is not None  # the run's section labels
    cli("embed", run.run_dir, "--save-logits", "--out", tmp_path / "x").assert_named_error(
        "mrl cascade RUN_DIR"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_cuda_asked_where_there_is_none_is_named_before_any_work(tmp_path, tiny_bert_path, cli):
    (tmp_path / "t.txt").write_text("one text\n")
    cli(
        "embed", tiny_bert_path, "--texts", tmp_path / "t.txt", "--out", tmp_path / "e",
        "--device", "cuda",
    ).assert_named_error("CUDA is not available")  # fmt: skip
    assert not (tmp_path / "e" / "manifest.json").exists()
    r = cli("embed", tiny_bert_path, "--texts", tmp_path / "t.txt", "--out", tmp_path / "e")
    assert r.code == 0, r.err  # auto: the CPU here

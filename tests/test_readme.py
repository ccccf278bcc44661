"""The README's Python examples run as written (they are the first code a user copies)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)  # examples write runs/ and indexes: keep them in tmp
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {})

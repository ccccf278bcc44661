"""mrl.io.atomic_dir_commit: readers see the old or the new version, never a mix."""

import pytest

from mrl.io import atomic_dir_commit, current_version_dir


def test_commit_replaces_version_and_cleans_up(tmp_path):
    root = tmp_path / "store"
    with atomic_dir_commit(root) as d:
        (d / "a.txt").write_text("one")
    first = current_version_dir(root)
    with atomic_dir_commit(root) as d:
        (d / "a.txt").write_text("two")
    second = current_version_dir(root)
    assert second != first and (second / "a.txt").read_text() == "two"
    assert sorted(p.name for p in root.iterdir()) == ["CURRENT", second.name]


def test_failed_commit_keeps_old_version(tmp_path):
    root = tmp_path / "store"
    with atomic_dir_commit(root) as d:
        (d / "a.txt").write_text("one")
    with pytest.raises(RuntimeError), atomic_dir_commit(root) as d:
        (d / "a.txt").write_text("half")
        raise RuntimeError("crash")
    assert (current_version_dir(root) / "a.txt").read_text() == "one"
    assert len(list(root.iterdir())) == 2


def test_first_commit_failing_leaves_no_version(tmp_path):
    root = tmp_path / "store"
    with pytest.raises(RuntimeError), atomic_dir_commit(root):
        raise RuntimeError("crash")
    with pytest.raises(ValueError, match="no CURRENT file"):
        current_version_dir(root)


def test_bad_pointer(tmp_path):
    (tmp_path / "CURRENT").write_text("../../etc\n")
    with pytest.raises(ValueError, match="not a version folder"):
        current_version_dir(tmp_path)

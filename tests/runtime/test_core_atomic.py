"""Atomic writes leave either the complete file or nothing."""

import numpy as np
import pytest

from fa3d.runtime.atomic import atomic_path, atomic_write_text


def test_success_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.npz"
    with atomic_path(target) as tmp:
        np.savez(tmp, a=np.arange(3))
    assert np.load(target)["a"].tolist() == [0, 1, 2]
    assert [p.name for p in target.parent.iterdir()] == ["out.npz"]


def test_failure_keeps_the_old_file_and_removes_the_partial(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_new_files_are_readable_by_others_and_existing_modes_are_kept(tmp_path):
    """mkstemp makes 0600 files: a written file gets the usual 0644, or the mode of the file it replaces."""
    new = tmp_path / "new.txt"
    atomic_write_text(new, "x")
    assert new.stat().st_mode & 0o777 == 0o644
    kept = tmp_path / "kept.txt"
    kept.write_text("old")
    kept.chmod(0o600)
    atomic_write_text(kept, "new")
    assert kept.read_text() == "new" and kept.stat().st_mode & 0o777 == 0o600

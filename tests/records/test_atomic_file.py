"""records.atomic_file: a write that fails leaves the old file whole and no temporary behind."""

from __future__ import annotations

import pytest

from records.atomic_file import atomic_write


def test_a_failed_write_keeps_the_old_file_and_a_clean_one_replaces_it(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path, "w") as fh:
        fh.write("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    with atomic_write(path, "w") as fh:
        fh.write("new")
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]

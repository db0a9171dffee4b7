"""Atomic writes leave either the complete new file or nothing (the old file stays)."""
import json

import pytest

from rdet.core.atomic import atomic_path, save_json


def test_success_replaces(tmp_path):
    target = tmp_path / "r.json"
    save_json({"a": 1}, target)
    save_json({"a": 2}, target)
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_failure_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]

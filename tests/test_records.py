"""Result records (rdet/core/records.py) and one-line error text (rdet/core/errors.py)."""
from pathlib import Path

import pytest

from rdet.core.errors import RecordError, first_line
from rdet.core.records import read_record


def test_first_line_of_blank_and_multiline_messages():
    assert first_line(OSError()) == "OSError"
    assert first_line(ValueError("\n  \n")) == "ValueError"
    assert first_line(ValueError("\nsecond\nthird")) == "second"
    assert first_line(ValueError("x" * 50), limit=10) == "x" * 10


def test_a_record_unreadable_for_a_reason_without_message_is_one_line(tmp_path, monkeypatch):
    """An OSError with an empty message (str(e).splitlines()[0] raised IndexError here)."""
    path = tmp_path / "result.json"
    path.write_text("{}")

    def broken(self, *a, **k):
        raise OSError()

    monkeypatch.setattr(Path, "read_text", broken)
    with pytest.raises(RecordError) as e:
        read_record(path)
    assert str(e.value) == f"{path}: unreadable result record (OSError)"


def test_a_record_must_be_an_object_with_a_task(tmp_path):
    path = tmp_path / "result.json"
    path.write_text('["not", "a", "record"]')
    with pytest.raises(RecordError, match="not a JSON object with a 'task'"):
        read_record(path)

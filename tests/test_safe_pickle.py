"""rdet.core.safe_pickle: Detectron2-format weights load; any other callable named by a .pkl is refused
before it runs (the crafted file's marker is never written); corrupt files are one-line errors."""
import collections
import datetime
import pickle

import numpy as np
import pytest

from rdet.core.errors import CheckpointError
from rdet.core.safe_pickle import UnsafePickleError, load_pickle


class _Runs:
    """Unpickling calls ``fn(*args)``."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _write(path, obj, protocol=pickle.HIGHEST_PROTOCOL):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_detectron2_weights_round_trip(tmp_path, protocol):
    arrays = {"stem.conv1.weight": np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32),
              "res2.0.conv1.norm.running_var": np.arange(4, dtype=np.float64), "flag": np.array([True, False])}
    obj = {"model": collections.OrderedDict(arrays), "__author__": "rdet", "matching_heuristics": True,
           "rdet": {"arch": "resnet18", "eps": np.float32(0.5), "norm": "l2", "d2": [1, (2, 3)], "raw": b"\x00\xff"}}
    back = load_pickle(_write(tmp_path / "w.pkl", obj, protocol))
    assert isinstance(back["model"], collections.OrderedDict) and list(back["model"]) == list(arrays)
    for k, v in arrays.items():
        assert back["model"][k].dtype == v.dtype and np.array_equal(back["model"][k], v)
    assert back["rdet"]["eps"] == np.float32(0.5) and back["rdet"]["d2"] == [1, (2, 3)]
    assert back["rdet"]["raw"] == b"\x00\xff" and back["matching_heuristics"] is True


@pytest.mark.parametrize("payload", ["exec", "os.system", "eval", "numpy_runstring"])
def test_callables_are_refused_before_they_run(tmp_path, payload):
    import os

    marker = tmp_path / "marker"
    code = f"open({str(marker)!r}, 'w').write('ran')"
    fn, args = {"exec": (exec, (code,)), "eval": (eval, (code,)), "os.system": (os.system, (f"touch {marker}",)),
                "numpy_runstring": (np.testing._private.utils.runstring, (code, {}))}[payload]
    path = _write(tmp_path / "evil.pkl", {"model": {"stem.conv1.weight": _Runs(fn, *args)}, "__author__": "x"})
    with pytest.raises(UnsafePickleError) as e:
        load_pickle(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}: refusing to unpickle ") and "--allow-pickle" in msg
    assert "a .pkl can run code" in msg and not marker.exists()
    with open(path, "rb") as f:  # the file is really dangerous: plain unpickling runs it
        pickle.load(f)
    assert marker.exists()


def test_allow_pickle_loads_other_objects(tmp_path):
    path = _write(tmp_path / "d.pkl", {"when": datetime.date(2020, 7, 1)})
    with pytest.raises(UnsafePickleError, match="datetime.date"):
        load_pickle(path)
    assert load_pickle(path, allow_pickle=True)["when"] == datetime.date(2020, 7, 1)


@pytest.mark.parametrize("kind,words", [("truncated", "truncated"), ("garbage", "not a readable pickle"),
                                        ("missing", "no such file")])
def test_unreadable_files_are_one_line_errors(tmp_path, kind, words):
    path = tmp_path / "w.pkl"
    if kind == "truncated":
        data = pickle.dumps({"model": {"a": np.zeros(1000, np.float32)}})
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(1).bytes(3000))
    with pytest.raises(CheckpointError) as e:
        load_pickle(path)
    assert words in str(e.value) and "\n" not in str(e.value)

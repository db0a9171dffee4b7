"""Reading ``.pkl`` weight files without running code from them.

Unpickling calls whatever callables the file names (``__reduce__``), so a crafted ``.pkl`` runs
code. Detectron2-format weights (``{'model': {name: ndarray}, '__author__': ..., ...}``, and the
older Caffe2 ``{'blobs': ...}`` files) only need numpy's array, dtype and scalar reconstruction,
``OrderedDict``, and ``_codecs.encode`` (how protocol 2 stores bytes); dicts, lists, tuples,
strings and numbers have their own opcodes. :class:`RestrictedUnpickler` allows exactly those
globals and refuses anything else before calling it.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, Dict, Tuple

from rdet.core.errors import CheckpointError

ALLOW_PICKLE_FLAG = "--allow-pickle"  # the opt-in flag every CLI that reads checkpoints spells this way

# (module, name) -> where the object lives today. numpy 2 moved numpy.core to numpy._core; files
# written by numpy 1 still name the old module, so both spellings map to the current object.
_ALLOWED: Dict[Tuple[str, str], Tuple[str, str]] = {
    ("collections", "OrderedDict"): ("collections", "OrderedDict"),
    ("_codecs", "encode"): ("_codecs", "encode"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
}
for _core in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = ("numpy._core.multiarray", "_reconstruct")
    _ALLOWED[(f"{_core}.multiarray", "scalar")] = ("numpy._core.multiarray", "scalar")
    _ALLOWED[(f"{_core}.numeric", "_frombuffer")] = ("numpy._core.numeric", "_frombuffer")  # protocol 5


class UnsafePickleError(CheckpointError):
    """A ``.pkl`` names a callable outside the allowed set: loading it could run code."""


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the globals in ``_ALLOWED``."""

    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")  # detectron2's model-zoo files come from Python 2
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED.get((module, name))
        if target is None:
            raise UnsafePickleError(f"{self.source}: refusing to unpickle {module}.{name} (a .pkl can run code); "
                                    f"pass {ALLOW_PICKLE_FLAG} if you trust this file")
        try:
            return super().find_class(*target)
        except (ImportError, AttributeError):  # numpy 1 has no numpy._core
            return super().find_class(target[0].replace("numpy._core", "numpy.core"), target[1])


def load_pickle(path: str | Path, allow_pickle: bool = False) -> Any:
    """The object stored in ``path``: restricted unpickling, or full unpickling with ``allow_pickle``.

    Missing, truncated or non-pickle files are one-line :class:`CheckpointError` s."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            if allow_pickle:
                return pickle.load(f, encoding="latin1")
            return RestrictedUnpickler(f, str(path)).load()
    except CheckpointError:
        raise
    except EOFError:
        raise CheckpointError(f"{path}: truncated pickle file") from None
    except Exception as e:  # noqa: BLE001 - a corrupt stream raises almost anything (ValueError, IndexError, ...)
        reason = (str(e).splitlines() or [""])[0][:100] or type(e).__name__
        raise CheckpointError(f"{path}: not a readable pickle file ({reason})") from None


def load_torch(path: str | Path, allow_pickle: bool = False) -> Any:
    """``torch.load`` on CPU with ``weights_only=True`` (tensors, numbers, strings, containers: no
    code runs) unless ``allow_pickle``; one-line :class:`CheckpointError` for a missing, truncated,
    garbage or pickle-requiring file."""
    import torch

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as e:
        if not allow_pickle and "Unsupported global" in str(e):
            culprit = re.search(r"GLOBAL ([\w.]+)", str(e))
            what = f" ({culprit.group(1)})" if culprit else ""
            raise CheckpointError(
                f"{path}: holds Python objects{what} that only arbitrary unpickling can load, which "
                f"can execute code; pass {ALLOW_PICKLE_FLAG} if you trust this file") from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (unreadable pickle)") from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, UnicodeDecodeError, IndexError) as e:
        reason = "truncated or corrupt" if "zip archive" in str(e) or isinstance(e, EOFError) else "unreadable"
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({reason})") from None

"""The one place where user errors become a one-line message and a non-zero exit."""
from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence

from rdet.errors import RdetError

EXIT_USER_ERROR = 2


def run_cli(main: Callable[[Optional[Sequence[str]]], object], argv: Optional[Sequence[str]] = None) -> int:
    """Call ``main(argv)``; print an :class:`RdetError` as ``error: ...`` and return exit code 2."""
    try:
        result = main(argv)
    except RdetError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0

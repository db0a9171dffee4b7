"""``python -m rdet.classify``: the module form of ``rdet-classify`` / ``python -m rdet classify``
(the spelling the user's card, scripts and papers cite); the same main, flags and exit codes."""
from rdet.cli.classify import main

if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m rdet.evaluate``: the module form of ``rdet-evaluate`` / ``python -m rdet evaluate``
(the spelling the user's card, scripts and papers cite); the same main, flags and exit codes."""
from rdet.cli.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())

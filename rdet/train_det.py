"""``python -m rdet.train_det``: the module form of ``rdet-train-det`` / ``python -m rdet train-det``
(the spelling the user's card, scripts and papers cite); the same main, flags and exit codes."""
from rdet.cli.train_det import main

if __name__ == "__main__":
    raise SystemExit(main())

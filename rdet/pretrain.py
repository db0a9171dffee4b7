"""``python -m rdet.pretrain``: the module form of ``rdet-pretrain`` / ``python -m rdet pretrain``
(the spelling the user's card, scripts and papers cite); the same main, flags and exit codes."""
from rdet.cli.pretrain import main

if __name__ == "__main__":
    raise SystemExit(main())

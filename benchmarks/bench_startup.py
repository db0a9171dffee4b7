"""A command's fixed cost with and without rdet's collector policy (rdet.core.collector).

The same command, the one-epoch ``pretrain`` demo shortened to 200 training images (and a
refusal of a bad value, which imports torch before it refuses), run as its own process two ways,
alternated: as ``python -m rdet.pretrain`` (the policy on: a command's own process) and through
``main(argv)`` called from a ``python -c`` line (the policy off: a library call). Prints the best
of each and their ratio. Data: Fashion-MNIST from Debian's dataset-fashion-mnist, staged into a
temporary folder.

    python benchmarks/bench_startup.py [--reps 4]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_adv_train import positive_int  # noqa: E402

TINY = ["SOLVER.EPOCHS", "1", "DATA.MAX_TRAIN", "200", "DATA.MAX_TEST", "100"]
LIBRARY_CALL = "import sys; from rdet.cli.pretrain import main; sys.exit(main(sys.argv[1:]))"


def timed(cmd, env, ok=(0,)):
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=positive_int, default=4, help="best of this many runs of each, alternated")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, RDET_DATASETS=str(Path(tmp) / "data"))
        cases = {"one-epoch demo (200 images)": (TINY, (0,)),
                 "refusal of SOLVER.EPOCHS -1": (["SOLVER.EPOCHS", "-1"], (2,))}
        for name, (opts, ok) in cases.items():
            best = {"policy": float("inf"), "library": float("inf")}
            for i in range(args.reps):
                for how in best:
                    out = ["OUTPUT_DIR", str(Path(tmp) / f"{how}{i}")]
                    cmd = ([sys.executable, "-m", "rdet.pretrain"] if how == "policy"
                           else [sys.executable, "-c", LIBRARY_CALL]) + opts + out
                    best[how] = min(best[how], timed(cmd, env, ok))
            print(f"{name}: {best['policy']:.2f} s as a command's own process, {best['library']:.2f} s through "
                  f"main(argv): {best['library'] / best['policy']:.2f}x")


if __name__ == "__main__":
    main()

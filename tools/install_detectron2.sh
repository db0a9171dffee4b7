#!/usr/bin/env bash
# Install detectron2 into the current Python environment, by the best route available.
#
# Routes, in order:
#   1. "present"  - detectron2 already imports: nothing to do.
#   2. "git"      - the official source build (needs GitHub and a compiler):
#                   pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git'
#   3. "pypi"     - the PyPI republishing `sal-detectron2==0.7.2` (a 2024 snapshot of upstream main,
#                   a cp310 wheel). Only its pure-Python package is used: the compiled `_C` is
#                   deleted, so detectron2 falls back to its Python ops (fine on CPU; COCOeval
#                   uses the slow pycocotools path).
#
# Force a route with RDET_D2_ROUTE=git|pypi. Idempotent: re-running after success is a no-op.
# Never installs or upgrades torch/torchvision (it runs in an existing CUDA environment as is).
# Without a package index, point pip at a wheel folder: PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels.
# Prints the route taken as the last line: "detectron2: route=<name> version=<v>".
set -euo pipefail

PY=${PYTHON:-python3}
ROUTE=${RDET_D2_ROUTE:-auto}
D2_PYPI_VERSION=0.7.2
GIT_URL='git+https://github.com/facebookresearch/detectron2.git'

# Runtime dependencies of detectron2's Python package (setup.py's install_requires, pinned where
# newer releases broke it).
DEPS=("setuptools<81" fvcore "iopath<0.1.11" pycocotools yacs "omegaconf<2.4" hydra-core
      termcolor tabulate cloudpickle matplotlib tensorboard Pillow tqdm packaging black)

d2_version() {
  "$PY" - <<'PYEOF' 2>/dev/null
import detectron2, detectron2.modeling, detectron2.engine  # noqa: F401
print(detectron2.__version__)
PYEOF
}

say_done() { echo "detectron2: route=$1 version=$(d2_version)"; }

if [ "$ROUTE" = auto ] && v=$(d2_version); then
  echo "detectron2: route=present version=$v"
  exit 0
fi

"$PY" -m pip install -q "${DEPS[@]}"

github_reachable() {
  "$PY" - <<'PYEOF' >/dev/null 2>&1
import socket
socket.create_connection(("github.com", 443), timeout=5).close()
PYEOF
}

if [ "$ROUTE" = git ] || { [ "$ROUTE" = auto ] && github_reachable; }; then
  echo "detectron2: building from GitHub (official route)..."
  if "$PY" -m pip install --no-build-isolation "$GIT_URL"; then
    say_done git
    exit 0
  fi
  [ "$ROUTE" = git ] && { echo "detectron2: git route failed" >&2; exit 1; }
  echo "detectron2: git route failed; falling back to PyPI's sal-detectron2" >&2
fi

# Route 3: pure-Python part of sal-detectron2, in a folder of its own on the path via a .pth file.
PURELIB=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
TARGET="$PURELIB/_rdet_detectron2"
TMP=$(mktemp -d "$PURELIB/.rdet_d2.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
"$PY" -m pip install -q --no-deps --python-version 3.10 --only-binary=:all: \
  --target "$TMP" "sal-detectron2==$D2_PYPI_VERSION"
rm -f "$TMP"/detectron2/_C*.so
rm -rf "$TARGET"
mv "$TMP" "$TARGET"
trap - EXIT
echo "$TARGET" > "$PURELIB/_rdet_detectron2.pth"
v=$(d2_version) || { echo "detectron2: installed to $TARGET but it does not import" >&2; exit 1; }
say_done pypi

#!/usr/bin/env bash
# Offline data that needs no download from outside the package registries:
# Fashion-MNIST from Debian's `dataset-fashion-mnist` (idx .gz files in
# /usr/share/datasets/fashion-mnist). scikit-learn's digits and scikit-image's photos come with
# their Python packages. Idempotent; without root/apt it only says what is missing.
set -euo pipefail
DIR=/usr/share/datasets/fashion-mnist
if [ -f "$DIR/train-images-idx3-ubyte.gz" ]; then
  echo "data: Fashion-MNIST present in $DIR"
  exit 0
fi
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  echo "data: installed Fashion-MNIST (dataset-fashion-mnist) into $DIR"
else
  echo "data: Fashion-MNIST missing; run as root: apt-get install dataset-fashion-mnist" >&2
fi

#!/usr/bin/env bash
# Downloads the pure-Python/CPython-3.12 wheels the GPU check needs beyond what the lent GPU machine
# has (it has torch, torchvision, numpy; no registry): pytest, hypothesis, zarr, numcodecs, tqdm,
# setuptools. Result: .device-carry/wheels/ (git-excluded), small enough for one `run` carry; plus the
# benchmarks' prebuilt demo images in .device-carry/demo/ (~18 MB; carry it with the wheels).
# DALI itself travels separately: ../shared/device/README.md (pack-dali.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
dest=.device-carry/wheels
rm -rf "$dest" && mkdir -p "$dest"
$PY -m pip download -q -c constraints.txt --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dest" pytest hypothesis "zarr>=3,<4" "numcodecs>=0.15" tqdm setuptools wheel
# numpy/torch/torchvision/pillow are on the device already (and big): drop them.
rm -f "$dest"/numpy-* "$dest"/torch-* "$dest"/torchvision-* "$dest"/nvidia_* "$dest"/pillow-*
# The benchmarks' demo images (real photos from scikit-image, which the device lacks): built here once.
$PY -c "from dali_relabel.demo_dataset import build_demo_dataset as b; b('.device-carry/demo', progress=False)"
du -sh .device-carry/demo
grep -qx '/.device-carry/' .git/info/exclude 2>/dev/null || echo '/.device-carry/' >> .git/info/exclude
du -sh "$dest"

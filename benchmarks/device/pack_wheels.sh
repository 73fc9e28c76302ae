#!/usr/bin/env bash
# Downloads the CPython-3.12 wheels the GPU check needs beyond what the lent GPU machine has (it has
# torch, torchvision, numpy, pillow; no registry), in two git-excluded folders each small enough for
# one `run` carry (64 MiB):
#   .device-carry/wheels/          pytest, hypothesis, zarr, numcodecs, tqdm, setuptools (~14 MB)
#   .device-carry/wheels-skimage/  scikit-image + scipy (~50 MB): tests that draw the demo dataset
# plus the benchmarks' prebuilt demo images in .device-carry/demo/ (~18 MB; carry it with the wheels).
# DALI itself travels separately (../shared/device/README.md, pack-dali.sh). The call sequence is in
# benchmarks/device/README.md.
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
extra=.device-carry/wheels-skimage
rm -rf "$extra" && mkdir -p "$extra"
$PY -m pip download -q -c constraints.txt --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$extra" scikit-image
rm -f "$extra"/numpy-* "$extra"/pillow-* "$extra"/networkx-* "$extra"/packaging-*
du -sh "$extra"
# The benchmarks' demo images (real photos from scikit-image, which the device lacks): built here once.
$PY -c "from dali_relabel.testing.demo_dataset import build_demo_dataset as b; b('.device-carry/demo', progress=False)"
du -sh .device-carry/demo
grep -qx '/.device-carry/' .git/info/exclude 2>/dev/null || echo '/.device-carry/' >> .git/info/exclude
du -sh "$dest"

#!/usr/bin/env bash
# The project's GPU check: one command for a machine with an NVIDIA GPU where DALI is importable.
# Builds the plugin for this GPU, runs the GPU tests (pytest -m gpu) and the GPU benchmarks, and
# prints a short summary last. Logs and JSON go to $OUT (default: a temp dir). Fits in ~5 minutes.
#
#   bash benchmarks/gpu_check.sh                # from the repository root
#
# On the lent H200 (no registry, no DALI installed): carry DALI as described in
# ../shared/device/README.md, and the test wheels made by benchmarks/device/pack_wheels.sh
# (.device-carry/wheels); this script installs them when present. The benchmarks' demo images cannot
# be drawn there (no scikit-image): pack_wheels.sh also prebuilds them into .device-carry/demo; carry it
# too. Set PYTHONPATH to the unpacked DALI before calling it.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
status=0
step() {  # step NAME TIMEOUT_S CMD...: runs CMD with a timeout, logs to $OUT/NAME.log, records failure
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "== $name" >&2
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $((SECONDS - t0))s" >>"$OUT/steps.txt"
  tail -n 5 "$OUT/$name.log" >&2
  [ $rc -eq 0 ] || status=1
  return $rc
}

# Wheels carried to a machine without a registry (benchmarks/device/README.md): the test tools here,
# scikit-image (~50 MB) sent ahead in its own call to $RELABEL_WHEELS (default /tmp/relabel-wheels).
WHEELS=${RELABEL_WHEELS:-/tmp/relabel-wheels}
if [ -d .device-carry/wheels ]; then
  step wheels 120 $PY -m pip install --no-index --find-links .device-carry/wheels pytest hypothesis "zarr>=3" numcodecs tqdm setuptools wheel
fi
if [ -d "$WHEELS" ]; then
  step wheels_skimage 120 $PY -m pip install --no-index --find-links "$WHEELS" scikit-image
fi
step install 120 $PY -m pip install --no-deps --no-build-isolation --no-index -e .
# The CPU library and the CUDA library for this GPU's architecture only (detected; DALI_RELABEL_CUDA_ARCHS
# overrides), as the first use of an operator would build them; --cuda fails loudly if nvcc is missing.
step build 300 $PY -m dali_relabel.cli build --cuda
$PY -c "import torch; print(torch.cuda.get_device_name(0))" >"$OUT/gpu.txt" 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >>"$OUT/gpu.txt" 2>&1

step gpu_tests 240 $PY -m pytest -m gpu -q -rs -p no:cacheprovider --junitxml="$OUT/gpu_tests.xml" tests
# Benchmarks on the demo images (prebuilt copy if carried), ImageNet-sized maps (C = 1000), fewer
# rounds/iterations than the defaults so that the whole script stays within its budget.
DATA=()
[ -d .device-carry/demo ] && DATA=(--data-dir .device-carry/demo)
step loader_bench 120 $PY benchmarks/loader_bench.py --device gpu --quick --threads 8 --batch 256 --images 2560 \
  --num-classes 1000 "${DATA[@]}" --json "$OUT/loader_bench.json"
step kd_overhead 240 $PY benchmarks/kd_overhead.py --device gpu --rounds 3 --warmup 3 --iters 5 "${DATA[@]}" \
  --json "$OUT/kd_overhead.json"
step op_bench 180 $PY benchmarks/op_bench.py --json "$OUT/op_bench.json"
# What the loader contract costs: a new epoch, a restart after a break, resuming half-way.
step epoch_bench 120 $PY benchmarks/epoch_bench.py --device gpu --quick --threads 8 --batch 256 --images 2560 \
  "${DATA[@]}" --json "$OUT/epoch_bench.json"
# Annotator vs the model's own forward pass (goal >= 0.9), a large model at the paper's input size.
step annotate_bench 240 $PY benchmarks/annotate_bench.py --device cuda --model torchvision:efficientnet_b7 \
  --size 475 --batch-size 64 --amp --images 1024 --repeats 3 --out "$OUT/annotate_bench.json"

{
  echo "## GPU check  $(date -u +%Y-%m-%dT%H:%MZ)  commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
  echo "GPU: $(head -n 1 "$OUT/gpu.txt")"
  echo
  cat "$OUT/steps.txt"
  echo
  grep -E "passed|failed|error|skipped" "$OUT/gpu_tests.log" | tail -n 1
  echo
  sed -n '/^| method/,/^$/p' "$OUT/loader_bench.log"
  echo
  sed -n '/^| method/,$p' "$OUT/kd_overhead.log"
  echo
  sed -n '/^| method/,/^$/p' "$OUT/op_bench.log"
  echo
  sed -n '/^| what/,$p' "$OUT/epoch_bench.log"
  echo
  tail -n 2 "$OUT/annotate_bench.log"
} | tee "$OUT/summary.md"
exit $status

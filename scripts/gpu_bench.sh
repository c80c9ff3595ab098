#!/usr/bin/env bash
# The GPU benchmark on a machine with no network (BENCHMARKS.md): `bench-gpu` on CUDA, its
# table and log in OUT_DIR/bench-gpu.log and its figures in OUT_DIR/bench-gpu.json.
#
#   bash scripts/gpu_bench.sh [OUT_DIR] [bench-gpu options...]
#
# Where diffusers is missing, the wheel in .whl/ (diffusers-*.whl; everything it needs is the
# usual torch/transformers stack) is installed into a private folder first, without touching
# the machine's own packages. Needs torch (CUDA build) and transformers; never mediapipe,
# gradio or trimesh. Options after OUT_DIR go to bench-gpu (e.g. --deadline-s 300).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-out}
shift || true
python=${PYTHON:-python3}

if ! "$python" -c "import diffusers" >/dev/null 2>&1; then
  wheels=(.whl/diffusers-*.whl)
  if [ ! -e "${wheels[0]}" ]; then
    echo "error: diffusers is not installed and there is no .whl/diffusers-*.whl" >&2
    exit 1
  fi
  site=$(mktemp -d)
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --disable-pip-version-check --target "$site" "${wheels[@]}"
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi

mkdir -p "$out"
"$python" -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', \
diffusers.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"
PYTHONUNBUFFERED=1 "$python" -m factorportrait bench-gpu --device cuda \
  --json "$out/bench-gpu.json" "$@" 2>&1 | tee "$out/bench-gpu.log"

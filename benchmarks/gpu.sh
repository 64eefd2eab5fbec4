#!/usr/bin/env bash
# The sweep, optimizer and linearize benchmarks on a GPU machine with no network, in one go.
#
# Written for this image: one NVIDIA H200, x86-64, Python 3.12, JAX 0.11 with CUDA, flax,
# optax, chex, xarray (with numpy, scipy); no tensorflow-datasets, array-record or mnist1d,
# no PyPI. The project is used from this working tree (PYTHONPATH; it is pure Python); what
# the image lacks for the benchmarks (python-control for the linearize baseline, matplotlib
# that python-control imports, and their dependencies; tqdm) comes as Python 3.12 manylinux
# wheels in .whl/ (ignored by git), downloaded beforehand on a machine with PyPI, from the
# repository root:
#
#   pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux_2_28_x86_64 --dest .whl \
#     control==0.10.2 matplotlib==3.10.8 contourpy==1.3.3 cycler==0.12.1 \
#     fonttools==4.61.1 kiwisolver==1.4.9 pillow==12.1.0 pyparsing==3.3.1 \
#     python-dateutil==2.9.0.post0 six==1.17.0 packaging==25.0 tqdm==4.67.1
#
# They are installed with `pip install --no-index --no-deps --target` into a temporary
# folder put on PYTHONPATH (nothing is installed into the image's environment). The sweep
# benchmark trains on random arrays of MNIST-1D's shapes (`--data synthetic`: 4,000 + 1,000
# examples of 40 features, 10 classes) since the image cannot generate MNIST-1D; its speed
# does not depend on the values.
#
# Usage (from anywhere):
#   bash benchmarks/gpu.sh OUT_DIR          the GPU run: sweep at 1, 64, 256, 1,024 and 4,096
#                                           members, the optimizer and linearize benchmarks;
#                                           about 8 minutes at most
#   bash benchmarks/gpu.sh --cpu OUT_DIR    the same steps at tiny sizes on the CPU (a check
#                                           of this script; tests/test_gpu_script.py runs it)
#
# OUT_DIR receives sweep.json, optimizers.json, linearize.json, the logs, and figures.json:
# model-steps/s per member count, the % of the H200's dense float32 rates they make, and
# the memory per member.
set -euo pipefail

MODE=gpu
if [[ "${1:-}" == "--cpu" ]]; then
  MODE=cpu
  shift
fi
if [[ $# -ne 1 ]]; then
  echo "usage: bash benchmarks/gpu.sh [--cpu] OUT_DIR" >&2
  exit 2
fi
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}

DEPS=$(mktemp -d)
trap 'rm -rf "$DEPS"' EXIT
shopt -s nullglob
wheels=("$REPO"/.whl/*.whl)
if [[ $MODE == gpu ]]; then
  if ((${#wheels[@]} == 0)); then
    echo "gpu.sh: no wheels in $REPO/.whl (see the download command at the top of this file)" >&2
    exit 2
  fi
  "$PYTHON" -m pip install --quiet --no-index --no-deps --target "$DEPS" "${wheels[@]}"
fi # --cpu: this machine's environment has the dependencies (the wheels are for Python 3.12)
export PYTHONPATH="$REPO:$DEPS${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false # so that peak memory is the program's own

if [[ $MODE == gpu ]]; then
  export JAX_PLATFORMS=cuda
  SWEEP=(--members 1 64 256 1024 4096 --steps 400 --repeats 3 --baselines plain)
  OPTIMIZERS=(--repeats 30)
  LINEARIZE=(--subset 500)
  LIMITS=(300 90 90)
else
  export JAX_PLATFORMS=cpu
  SWEEP=(--members 1 2 --steps 20 --repeats 1 --baselines plain)
  OPTIMIZERS=(--repeats 2 --scale 64 --only sgd momentum)
  LINEARIZE=(--grid 20 --info 5 --subset 10)
  LIMITS=(300 120 120)
fi

cd "$OUT"
"$PYTHON" -c "import jax; print('jax', jax.__version__, jax.devices())" | tee env.log
timeout "${LIMITS[0]}" "$PYTHON" "$REPO/benchmarks/sweep.py" --data synthetic "${SWEEP[@]}" \
  --json sweep.json 2>&1 | tee sweep.log
timeout "${LIMITS[1]}" "$PYTHON" "$REPO/benchmarks/optimizers.py" "${OPTIMIZERS[@]}" \
  --json optimizers.json 2>&1 | tee optimizers.log
timeout "${LIMITS[2]}" "$PYTHON" "$REPO/benchmarks/linearize.py" "${LINEARIZE[@]}" \
  --json linearize.json >linearize.log 2>&1

"$PYTHON" - "$MODE" <<'EOF'
"""figures.json: the headline figures of the three benchmarks, with the H200's rates."""
import json
import sys

import jax

H200_FLOAT32 = 67e12  # dense float32 FLOP/s of an H200 SXM (no tensor cores)
H200_TF32 = 494.7e12  # dense TF32 tensor-core FLOP/s (JAX's default float32 matmul on GPU)
sweep = json.load(open("sweep.json"))
flops = sweep["model_flops_per_step"]
rows = []
for row in sweep["rows"]:
    rate = row["rate"]["sweep"]
    rows.append(
        {
            "members": row["members"],
            "model_steps_per_s": rate,
            "percent_of_h200_float32": 100 * rate * flops / H200_FLOAT32,
            "percent_of_h200_tf32": 100 * rate * flops / H200_TF32,
            "bytes_per_member": row["bytes_per_member"],
            "sweep_over_plain_loop": row["sweep_over"].get("plain"),
        }
    )
figures = {
    "mode": sys.argv[1],
    "jax": jax.__version__,
    "device": jax.devices()[0].device_kind,
    "default_matmul_precision": str(getattr(jax.config, "jax_default_matmul_precision", None)),
    "model_flops_per_step": flops,
    "sweep": rows,
    "optimizers": json.load(open("optimizers.json"))["rows"],
    "linearize": json.load(open("linearize.json")),
}
json.dump(figures, open("figures.json", "w"), indent=1)
for r in rows:
    print(
        f"{r['members']:>5} members: {r['model_steps_per_s']:,.0f} model-steps/s, "
        f"{r['percent_of_h200_float32']:.2f}% of float32, {r['percent_of_h200_tf32']:.3f}% of "
        f"TF32, {(r['bytes_per_member'] or 0) / 1e6:.2f} MB/member"
    )
EOF
echo "gpu.sh: figures in $OUT/figures.json"

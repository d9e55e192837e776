#!/usr/bin/env bash
# GPU check (issue 17): one Fig. 3(c) point at the paper's sizes on one GPU, every stage timed, in at
# most ~8 minutes on an H100/H200 — then an estimate of the whole Fig. 3(c) sweep per GPU.
#
#   bash benchmarks/gpu_check.sh            # from a fresh machine with Python ≥ 3.11 and pip
#
# Stages (each with its own timeout; a stage that fails or runs out of time is reported and the
# others still run):
#   install    pip install -e . and tensorflow[and-cuda] within setup.cfg's range (skipped if a GPU
#              TensorFlow is already there)
#   env        Python, TensorFlow, CUDA, the GPU, a matmul's TFLOP/s
#   train      ResNet50 (Keras, weights=None, one logit) on CIFAR-10 cats/cars |S| = 5000, |E| = 2000,
#              SGD lr 0.01 batch 32, to zero training error (or the stage's budget): s/epoch, images/s
#   sharpness  Table 1's ResNet row (ζ 1e-5, batch 128, lr 100): a few of its 100 ascent epochs, s/epoch
#   kernel     the empirical kernel of eq. (7) on S + E (n = 7000; He-normal, eval mode): a few of its
#              M = 700 samples, s/sample
#   ep         EP on S + E with that kernel and the trained network's f (probit, Heaviside)
#   ep-large   EP at n = 11000 (the GPU backend of tfflat.prior.ep when present)
#   estimate   the full sweep's GPU-hours from the per-stage costs (the formula is printed)
# Budgets (seconds) can be changed: TRAIN_S SHARP_S KERNEL_S EP_S EPL_S INSTALL_S; the data folder with
# TFFLAT_DATA_DIR (default: the first of ../shared/data, shared/data, /work/shared/data holding cifar10/);
# PRECISION=mixed_bfloat16 trains in mixed precision. A CPU smoke run of the script itself:
#   SKIP_INSTALL=1 GPU_CHECK_S=32 GPU_CHECK_E=32 EPL_N=400 KERNEL_SAMPLES=2 SHARP_EPOCHS=1 \
#       TRAIN_S=200 SHARP_S=200 KERNEL_S=200 bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

START=$(date +%s)
OUT_DIR=${OUT:-$PWD/gpu_check_out}          # the device tool's $OUT comes back; else a local folder
WORK=${GPU_CHECK_WORK:-$(mktemp -d)}        # the model and the 400 MB kernel stay here
mkdir -p "$OUT_DIR" "$WORK"
INSTALL_S=${INSTALL_S:-120}
TRAIN_S=${TRAIN_S:-140}
SHARP_S=${SHARP_S:-60}
KERNEL_S=${KERNEL_S:-70}
EP_S=${EP_S:-40}
EPL_S=${EPL_S:-50}
export PY=${PYTHON:-python3}

stamp() { echo "[$(date -u +%H:%M:%S) +$(( $(date +%s) - START ))s] $*"; }
STATUS=()
stage() {    # stage NAME LIMIT_SECONDS COMMAND...: run with a timeout, never stop the script
    local name=$1 limit=$2 t0 rc
    shift 2
    stamp "=== stage $name (limit ${limit}s)"
    t0=$(date +%s)
    set +e
    timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$OUT_DIR/$name.log"
    rc=${PIPESTATUS[0]}
    set -e
    local took=$(( $(date +%s) - t0 ))
    [ "$rc" = 124 ] && stamp "stage $name: TIMED OUT after ${took}s" || stamp "stage $name: exit $rc, ${took}s"
    STATUS+=("$name rc=$rc ${took}s")
}

if [ -n "${TFFLAT_DATA_DIR:-}" ]; then
    DATA=$TFFLAT_DATA_DIR
else
    DATA=""
    for d in ../shared/data shared/data /work/shared/data; do
        if [ -d "$d/cifar10" ]; then DATA=$(cd "$d" && pwd); break; fi
    done
fi
[ -n "$DATA" ] && [ -d "$DATA/cifar10" ] || { echo "CIFAR-10 cats/cars not found: set TFFLAT_DATA_DIR" >&2; exit 2; }
export TFFLAT_DATA_DIR=$DATA TF_CPP_MIN_LOG_LEVEL=2 TF_FORCE_GPU_ALLOW_GROWTH=true
stamp "tfflat GPU check: data $DATA, work $WORK, output $OUT_DIR"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "nvidia-smi: not available"
$PY --version

install() {    # run as `bash -c` under the stage's timeout
    # TensorFlow's range from setup.cfg, e.g. tensorflow>=2.16,<2.22 -> tensorflow[and-cuda]>=2.16,<2.22
    local range
    range=$($PY - <<'EOF'
import configparser, re
cfg = configparser.ConfigParser(); cfg.read("setup.cfg")
line = next(l for l in cfg["options"]["install_requires"].splitlines() if re.match(r"\s*tensorflow\s*[<>=!~]", l))
print(re.sub(r"^\s*tensorflow", "", line).strip())
EOF
)
    if $PY -c "import tensorflow as tf, sys; sys.exit(0 if tf.config.list_physical_devices('GPU') else 1)" 2>/dev/null; then
        echo "a GPU TensorFlow is installed already"
        $PY -m pip install -q -e . 2>&1 | tail -3
    else
        $PY -m pip install -q --upgrade pip 2>&1 | tail -1
        $PY -m pip install -q -e . 2>&1 | tail -3
        $PY -m pip install -q "tensorflow[and-cuda]$range" 2>&1 | tail -3
    fi
    $PY -c "import tensorflow as tf; print('TensorFlow', tf.__version__, 'GPUs', tf.config.list_physical_devices('GPU'))"
}
if [ -n "${SKIP_INSTALL:-}" ]; then
    stamp "install skipped (SKIP_INSTALL)"
else
    stage install "$INSTALL_S" bash -c "set -euo pipefail; $(declare -f install); install"
fi

CHECK=("$PY" benchmarks/gpu_check.py --work "$WORK" --data-dir "$DATA")
stage env 60 "${CHECK[@]}" env
stage train "$TRAIN_S" "${CHECK[@]}" train --budget $(( TRAIN_S - 45 )) ${PRECISION:+--precision "$PRECISION"}
stage sharpness "$SHARP_S" "${CHECK[@]}" sharpness --epochs "${SHARP_EPOCHS:-3}"
stage kernel "$KERNEL_S" "${CHECK[@]}" kernel --samples "${KERNEL_SAMPLES:-12}"
stage ep "$EP_S" "${CHECK[@]}" ep
stage ep-large "$EPL_S" "${CHECK[@]}" ep-large --n "${EPL_N:-11000}"
stage estimate 30 "${CHECK[@]}" estimate

cp "$WORK"/*.json "$OUT_DIR"/ 2>/dev/null || true
stamp "=== summary (per-stage JSON in $OUT_DIR)"
for s in "${STATUS[@]}"; do echo "  $s"; done
for f in "$OUT_DIR"/*.json; do echo "--- $(basename "$f")"; cat "$f"; echo; done
stamp "done in $(( $(date +%s) - START ))s"

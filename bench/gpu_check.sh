#!/usr/bin/env bash
# rnnfused: everything that needs a GPU, in one command, for a lent GPU machine.
#
#   bash bench/gpu_check.sh LOGDIR
#
# Steps (each logs to LOGDIR/<step>.log; all steps run even when one fails):
#   1. environment    nvidia-smi, torch / CUDA / cuDNN versions
#   2. build          pip install --no-build-isolation --no-deps -e .
#                     (TORCH_CUDA_ARCH_LIST=9.0 and MAX_JOBS=16 unless already set)
#   3. pytest         pytest tests -q --maxfail=25  (all tests, CUDA included)
#   4. sanitizers     compute-sanitizer memcheck, racecheck, synccheck and initcheck on tools/sanitize_case.py
#                     for each kernel path (stepwise, persistent): forward and backward, every dtype
#   5. benchmark      python bench/bench_rnn.py --gpu-report LOGDIR/report.md  (if present)
# Prints a PASS/FAIL summary last; exits non-zero if any step failed.
set -u

LOGDIR=${1:?usage: bash bench/gpu_check.sh LOGDIR}
mkdir -p "$LOGDIR"
LOGDIR=$(cd "$LOGDIR" && pwd)
cd "$(dirname "$0")/.."

export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-16}
PY=${PYTHON:-python3}
SANITIZER=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}

# GPU_CHECK_STEPS picks steps (default all but stepping): any of env build pytest sanitize bench
# stepping, e.g.
# GPU_CHECK_STEPS="env build pytest" then GPU_CHECK_STEPS="build sanitize bench", to fit a time limit.
STEPS=" ${GPU_CHECK_STEPS:-env build pytest sanitize bench} "
want() { [[ "$STEPS" == *" $1 "* ]]; }

SUMMARY=()
FAILED=0
step() {  # step NAME CMD...
  local name=$1; shift
  local log="$LOGDIR/$name.log" t0 rc
  echo "== $name: $*"
  t0=$(date +%s)
  { echo "\$ $*"; "$@"; } > "$log" 2>&1
  rc=$?
  local dt=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then
    SUMMARY+=("PASS  $name (${dt}s)")
  else
    SUMMARY+=("FAIL  $name (rc=$rc, ${dt}s) -> $log")
    FAILED=1
    tail -n 20 "$log" | sed 's/^/    | /'
  fi
}

want env && step environment bash -c "nvidia-smi; $PY -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"cudnn\", torch.backends.cudnn.version(), \"device\", torch.cuda.get_device_name(0))'; $SANITIZER --version"

want build && step build "$PY" -m pip install --no-build-isolation --no-deps -v -e .

want build && step import "$PY" -c "import rnnfused, torch; assert rnnfused.built_with_cuda(), 'built without CUDA'; print('kernel for B=8,H=256:', rnnfused.cuda_kernel_name(8, 256, torch.float32, False))"

want pytest && step pytest "$PY" -m pytest tests -q -rs --maxfail=25  # not -x: one GPU run should show every failure

want sanitize && for k in stepwise persistent; do
  # No caching allocator under memcheck, so that out-of-bounds accesses hit allocation edges.
  step "memcheck_$k" env RNNFUSED_KERNEL=$k PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
    "$SANITIZER" --tool memcheck --error-exitcode 99 --leak-check no "$PY" tools/sanitize_case.py
  step "racecheck_$k" env RNNFUSED_KERNEL=$k \
    "$SANITIZER" --tool racecheck --racecheck-report all --error-exitcode 99 "$PY" tools/sanitize_case.py
  step "synccheck_$k" env RNNFUSED_KERNEL=$k \
    "$SANITIZER" --tool synccheck --error-exitcode 99 "$PY" tools/sanitize_case.py
  # The state workspace starts uninitialised: every element must be written before it is read.
  step "initcheck_$k" env RNNFUSED_KERNEL=$k PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
    "$SANITIZER" --tool initcheck --error-exitcode 99 "$PY" tools/sanitize_case.py
done

if ! want bench; then
  :
elif [ -f bench/bench_rnn.py ]; then
  QUICK=()
  if "$PY" bench/bench_rnn.py --help 2>/dev/null | grep -q -- "--quick"; then QUICK=(--quick); fi
  step benchmark "$PY" bench/bench_rnn.py --gpu-report "$LOGDIR/report.md" ${QUICK[@]+"${QUICK[@]}"}
else
  SUMMARY+=("SKIP  benchmark (bench/bench_rnn.py not found)")
fi

# Opt-in (not in the default steps, to keep the default within one device call): stepping on the
# GPU, auto (hoists) and the cell kernel per step, for the CUDA input-mode rule (PENDING.md).
if want stepping; then
  step stepping_auto "$PY" bench/bench_stepping.py --device cuda --quick --report "$LOGDIR/stepping-auto.md"
  step stepping_step env RNNFUSED_INPUT_MODE=step "$PY" bench/bench_stepping.py --device cuda --quick \
    --report "$LOGDIR/stepping-step.md"
fi

echo
echo "== rnnfused GPU check summary (logs in $LOGDIR)"
printf '%s\n' "${SUMMARY[@]}" | tee "$LOGDIR/summary.txt"
if [ $FAILED -eq 0 ]; then echo "ALL PASS"; else echo "SOME STEPS FAILED"; fi
exit $FAILED

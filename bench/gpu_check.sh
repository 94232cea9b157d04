#!/usr/bin/env bash
# rnnfused: the checks that need a GPU, in one command that always reports.
#
#   bash bench/gpu_check.sh LOGDIR [first-contact|full]
#
# Every step runs under `timeout` (its own limit, and never past the run's budget) and writes its
# log into LOGDIR as it goes: LOGDIR/<step>.log, and one line per finished step appended to
# LOGDIR/summary.txt at once, so that a run killed from outside still leaves what it did. The
# last line printed (and of summary.txt) is GO or NO-GO: GO only when every step passed.
#
# first-contact (the default): the lean first run on a new GPU, sized for one 8-minute command on
# an H100/H200 including the build. A failed build, import or device step stops the run (nothing
# after it can work); the other steps run even after a failure.
#   environment  nvidia-smi, torch / CUDA / cuDNN, nvcc, compute-sanitizer versions
#   build        pip install --no-build-isolation --no-deps -e .  (FORCE_CUDA=1,
#                TORCH_CUDA_ARCH_LIST=9.0 and MAX_JOBS=16 unless set)
#   import       import rnnfused: built with CUDA, for which architectures
#   device       the first step that needs a device: one FusedRNN forward + backward on it
#   coresidency  the persistent plans: co-resident CTAs from the driver beside CUDA's rule
#   test_cuda    pytest tests/test_cuda.py -x (every kernel path against cuDNN and float64)
#   stress       the group barrier: H=1024 float32, B=64, T=2000, 20 runs bitwise equal, close
#                to the stepwise kernel and float64 (tools/gpu_first_contact.py stress)
#   memcheck     compute-sanitizer memcheck on tools/sanitize_case.py (float32, persistent),
#                only rnnfused's kernels instrumented
#   synccheck    compute-sanitizer synccheck, likewise
#   benchmark    python bench/bench_rnn.py --gpu-report LOGDIR/report.md (the quick GPU preset
#                against cuDNN, short timing budget)
# full: environment, build, import, device, pytest (all tests), memcheck / racecheck /
#   synccheck / initcheck for each kernel path on every dtype, benchmark; opt-in stepping.
#
# Knobs: GPU_CHECK_STEPS="a b c" runs only those steps (names as above); GPU_CHECK_BUDGET
# (seconds for the whole run: first-contact 450, full 3000); GPU_CHECK_TIMEOUTS="step=seconds ..."
# overrides step limits; PYTHON (python3), COMPUTE_SANITIZER.
set -u

LOGDIR=${1:?usage: bash bench/gpu_check.sh LOGDIR [first-contact|full]}
PRESET=${2:-first-contact}
case "$PRESET" in first-contact|full) ;; *) echo "unknown preset '$PRESET' (first-contact, full)" >&2; exit 2;; esac
mkdir -p "$LOGDIR"
LOGDIR=$(cd "$LOGDIR" && pwd)
cd "$(dirname "$0")/.."

export PYTHONUNBUFFERED=1
export FORCE_CUDA=${FORCE_CUDA:-1}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-16}
PY=${PYTHON:-python3}
SANITIZER=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
if [ "$PRESET" = first-contact ]; then
  DEFAULT_STEPS="environment build import device coresidency test_cuda stress memcheck synccheck benchmark"
  BUDGET=${GPU_CHECK_BUDGET:-450}
else
  DEFAULT_STEPS="environment build import device pytest sanitize benchmark"
  BUDGET=${GPU_CHECK_BUDGET:-3000}
fi
STEPS=" ${GPU_CHECK_STEPS:-$DEFAULT_STEPS} "
want() { [[ "$STEPS" == *" $1 "* ]]; }
START=$SECONDS
MARGIN=5                 # seconds kept for the summary after the last step
SUMMARY="$LOGDIR/summary.txt"
: > "$SUMMARY"
FAILED=0
STOPPED=""               # set when a step that later steps need failed

note() {  # note LINE: one summary line, written at once
  echo "$1" | tee -a "$SUMMARY"
}

left() {  # seconds of the budget left for steps
  echo $(( BUDGET - (SECONDS - START) - MARGIN ))
}

limit_for() {  # limit_for NAME DEFAULT: the step's limit (GPU_CHECK_TIMEOUTS may override it),
               # never past the budget
  local name=$1 t=$2 kv l
  for kv in ${GPU_CHECK_TIMEOUTS:-}; do
    [ "${kv%%=*}" = "$name" ] && t=${kv#*=}
  done
  l=$(left)
  if [ "$l" -lt "${t%%.*}" ]; then t=$l; fi
  echo "$t"
}

step() {  # step NAME LIMIT_SECONDS CRITICAL(0|1) CMD...
  local name=$1 limit=$2 critical=$3; shift 3
  local log="$LOGDIR/$name.log" t0 rc t
  if [ -n "$STOPPED" ]; then
    note "SKIP  $name (after the failed $STOPPED step)"
    FAILED=1
    return
  fi
  if [ "$(left)" -lt 1 ]; then
    note "SKIP  $name (no time left in the ${BUDGET}s budget)"
    FAILED=1
    return
  fi
  t=$(limit_for "$name" "$limit")
  echo "== $name (limit ${t}s): $*"
  { echo "\$ $*"; echo "# limit ${t}s, started $(date -u +%H:%M:%S) UTC"; } > "$log"
  t0=$SECONDS
  timeout --kill-after=10 "$t" "$@" >> "$log" 2>&1
  rc=$?
  local dt=$(( SECONDS - t0 ))
  if [ $rc -eq 0 ]; then
    note "PASS  $name (${dt}s)"
  else
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
      echo "# timed out after ${t}s" >> "$log"
      note "FAIL  $name (timed out after ${t}s) -> $log"
    else
      note "FAIL  $name (rc=$rc, ${dt}s) -> $log"
    fi
    FAILED=1
    tail -n 20 "$log" | sed 's/^/    | /'
    if [ "$critical" = 1 ]; then STOPPED=$name; fi
  fi
}

# The kernel filter of compute-sanitizer (only rnnfused's kernels instrumented), in the spelling
# this version knows.
sanitizer_filter() {
  if "$SANITIZER" --help 2>/dev/null | grep -q -- "--kernel-name"; then
    echo "--kernel-name kns=rnnfused"
  elif "$SANITIZER" --help 2>/dev/null | grep -q -- "--filter"; then
    echo "--filter kns=rnnfused"
  fi
}

want environment && step environment 60 0 bash -c "nvidia-smi || echo 'nvidia-smi: not found or failed'; \
  $PY -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"cudnn\", torch.backends.cudnn.version(), \"cuda available\", torch.cuda.is_available())'; \
  (nvcc --version || ls -d /usr/local/cuda*/bin/nvcc) 2>&1 | tail -n 2; \"$SANITIZER\" --version 2>&1 | tail -n 1; true"

want build && step build 300 1 "$PY" -m pip install --no-build-isolation --no-deps -v -e .

want import && step import 60 1 "$PY" -c "import rnnfused; assert rnnfused.built_with_cuda(), 'built without CUDA'; print('built with CUDA for', rnnfused._C.cuda_archs(), rnnfused.build_info())"

want device && step device 90 1 "$PY" tools/gpu_first_contact.py device

want coresidency && step coresidency 60 0 "$PY" tools/gpu_first_contact.py coresidency

want test_cuda && step test_cuda 200 0 "$PY" -m pytest tests/test_cuda.py -x -q -rs

want stress && step stress 120 0 "$PY" tools/gpu_first_contact.py stress

FILTER=$(sanitizer_filter)
# shellcheck disable=SC2086  # FILTER is two words or none
want memcheck && step memcheck 120 0 env RNNFUSED_KERNEL=persistent PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
  "$SANITIZER" --tool memcheck $FILTER --error-exitcode 99 --leak-check no "$PY" tools/sanitize_case.py float32
# shellcheck disable=SC2086
want synccheck && step synccheck 120 0 env RNNFUSED_KERNEL=persistent \
  "$SANITIZER" --tool synccheck $FILTER --error-exitcode 99 "$PY" tools/sanitize_case.py float32

want pytest && step pytest 1200 0 "$PY" -m pytest tests -q -rs --maxfail=25  # not -x: every failure

if want sanitize; then
  for k in stepwise persistent; do
    # shellcheck disable=SC2086
    step "memcheck_$k" 300 0 env RNNFUSED_KERNEL=$k PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
      "$SANITIZER" --tool memcheck $FILTER --error-exitcode 99 --leak-check no "$PY" tools/sanitize_case.py
    # shellcheck disable=SC2086
    step "racecheck_$k" 300 0 env RNNFUSED_KERNEL=$k \
      "$SANITIZER" --tool racecheck $FILTER --racecheck-report all --error-exitcode 99 "$PY" tools/sanitize_case.py
    # shellcheck disable=SC2086
    step "synccheck_$k" 300 0 env RNNFUSED_KERNEL=$k \
      "$SANITIZER" --tool synccheck $FILTER --error-exitcode 99 "$PY" tools/sanitize_case.py
    # The state workspace starts uninitialised: every element must be written before it is read.
    # shellcheck disable=SC2086
    step "initcheck_$k" 300 0 env RNNFUSED_KERNEL=$k PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
      "$SANITIZER" --tool initcheck $FILTER --error-exitcode 99 "$PY" tools/sanitize_case.py
  done
fi

if want benchmark; then
  BENCH=(--gpu-report "$LOGDIR/report.md")
  [ "$PRESET" = first-contact ] && BENCH+=(--budget 0.3 --max-reps 30)
  step benchmark 150 0 "$PY" bench/bench_rnn.py "${BENCH[@]}"
fi

# Opt-in: stepping on the GPU, auto (hoists) and the cell kernel per step, for the CUDA
# input-mode rule (bench/results/PENDING.md).
if want stepping; then
  step stepping_auto 300 0 "$PY" bench/bench_stepping.py --device cuda --quick --report "$LOGDIR/stepping-auto.md"
  step stepping_step 300 0 env RNNFUSED_INPUT_MODE=step "$PY" bench/bench_stepping.py --device cuda --quick \
    --report "$LOGDIR/stepping-step.md"
fi

echo
echo "== rnnfused GPU check ($PRESET, $(( SECONDS - START ))s; logs in $LOGDIR)"
cat "$SUMMARY"
if [ $FAILED -eq 0 ]; then note "GO"; else note "NO-GO"; fi
exit $FAILED

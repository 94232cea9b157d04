#!/usr/bin/env bash
# The README's newcomer path, timed on a clean clone (issue 21): install (CPU-only: no GPU here),
# the same install again, the quick tier, the benchmark, the full suite. Logs to $OUT.
# Usage: tools/measure_first_hour.sh [SOURCE_REPO [CLONE_DIR [TIMES_FILE]]]; FULL=0 skips the full suite.
# Run it on an idle machine (say the load with the figures); the README's times come from it.
set -uo pipefail
SRC=${1:-$(git -C "$(dirname "$0")" rev-parse --show-toplevel)}; DIR=${2:-/tmp/rnnfused-first-hour}; OUT=${3:-$PWD/first-hour-times.txt}
rm -rf "$DIR"; git clone -q "$SRC" "$DIR"; cd "$DIR"
export PATH=$(echo "$PATH" | tr ':' '\n' | grep -v ccache | paste -sd:)   # a newcomer has no ccache
unset FORCE_CUDA RNNFUSED_CPU_ONLY MAX_JOBS
python3 -m venv .venv && . .venv/bin/activate && python -m pip install -q --upgrade pip
{ echo "commit $(git rev-parse --short HEAD)  $(date -u)  $(nproc) CPUs  $(grep -m1 'model name' /proc/cpuinfo)"; uptime; } > "$OUT"
t() { local s=$SECONDS; "$@" > "$DIR/log_$LABEL.txt" 2>&1; local rc=$?; echo "$(printf '%-12s' "$LABEL") $((SECONDS - s)) s rc=$rc" | tee -a "$OUT"; }
LABEL=torch t bash -c 'pip install torch ninja pybind11 "setuptools>=77" wheel'
LABEL=install t bash -c 'pip install --no-build-isolation -e ".[bench,test]" && python -m rnnfused'
touch "$DIR/.mark"; sleep 1
LABEL=reinstall t bash -c 'pip install torch ninja pybind11 "setuptools>=77" wheel && pip install --no-build-isolation -e ".[bench,test]"'
find build -name '*.o' -newer "$DIR/.mark" | head -3 | sed 's/^/rebuilt: /' >> "$OUT"
LABEL=quick t python -m pytest tests -q -m "not slow and not emulated" -p no:cacheprovider
LABEL=bench t python bench/bench_rnn.py
[ "${FULL:-1}" = 1 ] && LABEL=full t python -m pytest tests -q -p no:cacheprovider --durations=30
uptime >> "$OUT"

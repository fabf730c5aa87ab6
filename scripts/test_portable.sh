#!/usr/bin/env bash
# The numerics-sensitive tests (pytest marker `numerics`: parity with the official code, the fast
# CPU kernels against the reference ones, deploy(), training parity, the demo run) under the CPU
# kernels that other machines run: generic (ATen `default`, oneDNN SSE4.1) and AVX2, with one torch
# thread each (`make test` runs them with the machine's own kernels and 2 threads). Both runs go at
# once, one core each; each one's log is printed when both are done.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
LOGS=${PORTABLE_LOGS:-output/test-portable}
mkdir -p "$LOGS"

run() {  # name ATEN_CPU_CAPABILITY ONEDNN_MAX_CPU_ISA
  ATEN_CPU_CAPABILITY=$2 ONEDNN_MAX_CPU_ISA=$3 MLLA_RTDETR_TEST_THREADS=1 OMP_NUM_THREADS=1 \
    "$PY" -m pytest -q -p no:cacheprovider -m numerics tests "${@:4}" > "$LOGS/$1.log" 2>&1
}

run default default SSE41 "$@" & generic=$!
run avx2 avx2 AVX2 "$@" & avx2=$!
wait $generic; rc_generic=$?
wait $avx2; rc_avx2=$?
for name in default avx2; do
  echo "===== ATEN_CPU_CAPABILITY=$name (log: $LOGS/$name.log)"
  tail -n 40 "$LOGS/$name.log"
done
echo "test-portable: generic kernels exit $rc_generic, AVX2 kernels exit $rc_avx2"
[ $rc_generic -eq 0 ] && [ $rc_avx2 -eq 0 ]

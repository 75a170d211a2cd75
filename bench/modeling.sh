#!/usr/bin/env bash
# Model-engine benchmark: SGEMM against numpy/OpenBLAS (measured alternately in the same run), the
# machine's FMA peak, and training/inference tokens/s of a ~10M and a ~100M Mistral-shaped model.
# Usage: bench/modeling.sh [--sizes 512,1024,2048,4096] [--models 10m,100m] [--skip-models]
# Bounded: a few minutes on 2 cores. Writes the report to stdout; copy it into bench/results/modeling.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's numpy, linked against Debian's OpenBLAS (the pyenv python on the PATH has no numpy).
PY=/usr/bin/python3
if ! "$PY" -c 'import numpy' 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3-numpy >/dev/null
fi
# Without an OpenBLAS package, Debian's numpy falls back to the reference BLAS; make sure it is there.
if ! ls /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas*.so* >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq libopenblas0-pthread >/dev/null
fi

dotnet build -c Release bench/Atelier.Modeling.Bench -v q -nologo >/dev/null
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE may be set in this environment; they are removed for numpy's
# runs only (the bench drops them from the child process it starts).
exec dotnet bench/Atelier.Modeling.Bench/bin/Release/net10.0/Atelier.Modeling.Bench.dll --python "$PY" "$@"

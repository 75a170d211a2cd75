#!/usr/bin/env bash
# LoRA training tokens/s: Atelier against a PyTorch reference loop (Debian's python3-torch), on three model
# sizes (~0.13M, ~10M, ~100M parameters), same weights, adapter initialisation, tokens, LoRA rank/alpha/targets,
# AdamW, clipping and tokens per step. Runs alternate (Atelier, PyTorch, ...), each engine on 2 threads
# (PyTorch with OMP_WAIT_POLICY=PASSIVE), and the medians are compared; "met" means >= 1.0x PyTorch.
# Usage: bench/train.sh [--sizes tiny,10m,100m] [--threads 2] [--runs N]
# Bounded: a few minutes on 2 cores. Copy the output into bench/results/train.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's python3 with torch, numpy and OpenBLAS: the strongest PyTorch peer this machine has.
source bench/torch-peer.sh

dotnet build -c Release bench/Atelier.Modeling.Bench -v q -nologo >/dev/null
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE may be set in this environment; the bench removes them from
# PyTorch's process only, and sets OMP_WAIT_POLICY=PASSIVE and the thread counts there.
exec dotnet bench/Atelier.Modeling.Bench/bin/Release/net10.0/Atelier.Modeling.Bench.dll train --python "$PY" --threads 2 "$@"

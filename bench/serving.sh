#!/usr/bin/env bash
# Serving benchmark of the inference engine (issue 15): a ~100M and a ~1B Mistral-shaped model with random
# weights (bf16 by default, as released checkpoints ship them; --dtype fp32), each figure beside its peer or limit measured in the same run: decode at batch 1 against
# the memory-bandwidth roofline (STREAM copy), 32 concurrent requests against the engine one at a time
# and against a PyTorch generation loop (Debian's python3-torch) on the same weights, the batch-32 step
# against the SGEMM rate, TTFT behind a 2k-token shared prefix with the prefix cache on and off, and 8
# LoRA adapters mixed in one batch against one adapter and against the requests grouped per adapter.
# Usage: bench/serving.sh [--models 100m,1b,7b] [--dtype bf16|fp32] [--threads N] [--no-torch]
# Bounded: about 10 minutes on 2 cores for both models (--models 100m: about 2). Needs ~12 GB of free
# memory for the 1B model (its weights, the engine's packed copy, and PyTorch's copy while it runs).
# --models 7b: a Mistral-7B-shaped bf16 checkpoint (14.5 GB written to the temporary directory and
# deleted after) served as loaded: load time, peak memory against 24 GiB, decode at batch 1 against the
# roofline of the bf16 weights. Needs ~16 GB of free memory and ~15 GB of disk; several minutes.
# Writes the report to stdout; copy it into bench/results/serving.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's python3 with torch, numpy and OpenBLAS: the strongest PyTorch peer this machine has.
source bench/torch-peer.sh

dotnet build -c Release bench/Atelier.Serving.Bench -v q -nologo >/dev/null
exec dotnet bench/Atelier.Serving.Bench/bin/Release/net10.0/Atelier.Serving.Bench.dll --python "$PY" "$@"

# Sourced by the benchmarks that run a PyTorch peer (bench/train.sh, bench/serving.sh): sets PY to Debian's
# python3 with python3-torch and numpy (the pyenv python on the PATH has neither), installing them if missing.
# Debian's torch calls the system BLAS (BLAS_INFO=generic); without an OpenBLAS package that is the
# reference BLAS at a few GFLOP/s, a peer ten times too weak. Make sure OpenBLAS provides it.
PY=/usr/bin/python3
if ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3-torch python3-numpy >/dev/null
fi
if ! ls /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas*.so* >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq libopenblas0-pthread >/dev/null
fi

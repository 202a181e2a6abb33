#!/usr/bin/env bash
# The GPU check (issue 15): UCE and ESD-x on an SD-1.x-sized random UNet, generation and the
# smoke benchmark, with times, on CUDA. Run from the repository root on a machine with a GPU:
#   bash benchmarks/gpu_check.sh            (installs into .venv first, as make install does)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
.venv/bin/python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
.venv/bin/python benchmarks/gpu_check.py "$@"

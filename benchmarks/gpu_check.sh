#!/usr/bin/env bash
# GPU check, one prepared script (under 8 minutes on one H100): the tests on CUDA, then one epoch of SASRec
# and of GRU4Rec on a generated dataset of full YooChoose size (33 M clicks, 52 k items), printing
# clicks/s, s/epoch and peak GPU memory.
#   bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-gpu
.venv-gpu/bin/pip install -q -e '.[dev]'
.venv-gpu/bin/python -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.cuda.get_device_name(0))"
SEQREC_TEST_DEVICE=cuda timeout 240 .venv-gpu/bin/python -m pytest -q -x tests/test_sasrec.py tests/test_gru4rec.py \
    tests/test_evaluation.py tests/test_training.py
timeout 300 .venv-gpu/bin/python benchmarks/bench_gpu.py

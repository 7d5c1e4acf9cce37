#!/usr/bin/env bash
# GPU check, one prepared script (6-7 minutes on one H100): the model, evaluator and training tests
# on CUDA, then SASRec and GRU4Rec training on a generated dataset of full YooChoose size (33 M clicks,
# 52 k items), printing clicks/s, s/epoch and peak GPU memory.
#   bash benchmarks/gpu_check.sh [bench_gpu.py options, e.g. --seconds 30 --compile]
# It uses the Python environment it is started in (PYTHON, default python3), which needs a CUDA build
# of torch and the project's other dependencies (pip install -e '.[dev]' into it); the project itself
# is imported from this checkout.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.cuda.get_device_name(0))" || exit 1
(cd benchmarks && "$PYTHON" bench_gpu.py --prepare-only) &  # the data is generated while the tests run
prepare=$!
status=0
SEQREC_TEST_DEVICE=cuda timeout 300 "$PYTHON" -m pytest -q -p no:cacheprovider \
    tests/test_sasrec.py tests/test_gru4rec.py tests/test_evaluation.py tests/test_training.py || status=1
wait $prepare || status=1
(cd benchmarks && timeout 300 "$PYTHON" bench_gpu.py "$@") || status=1
exit $status

#!/usr/bin/env bash
# One call on a GPU machine: install, the GPU-relevant tests, the MFU benchmark, and a short
# two-step training run through `scaling train` in bf16. Prints tables for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv /tmp/gpu-venv && . /tmp/gpu-venv/bin/activate
pip install --quiet -e ".[dev]"
nvidia-smi --query-gpu=name,memory.total --format=csv
python -m pytest -q -x tests/model tests/test_counting.py tests/training/test_schedules.py
python benchmarks/model_step.py --device cuda --steps 10 --batch 16 --seq-len 1024
python benchmarks/gpu_mfu.py
cat > /tmp/gpu-run.toml <<'TOML'
[model]
vocab_size = 4096
d_model = 512
n_layers = 8
n_heads = 8
max_seq_len = 512
[data]
vocab_size = 4096
[train]
tokens = 4_194_304
batch_tokens = 65536
micro_batch_size = 32
seq_len = 512
precision = "bf16"
eval_interval = 0
TOML
scaling train /tmp/gpu-run.toml --out /tmp/gpu-run --no-progress
tail -n 2 /tmp/gpu-run/metrics.jsonl

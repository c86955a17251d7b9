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
# The same run through Accelerate's FSDP2 plugin on one GPU, with per-block compile.
sed 's/^precision = "bf16"$/precision = "bf16"\ncompile = true\nparallelism = "fsdp"/' \
  /tmp/gpu-run.toml > /tmp/gpu-fsdp.toml
torchrun --nproc_per_node 1 -m scaling train /tmp/gpu-fsdp.toml --out /tmp/gpu-fsdp --no-progress
python - <<'PY'
import json
rows = []
for name in ("gpu-run", "gpu-fsdp"):
    result = json.load(open(f"/tmp/{name}/result.json"))
    last = [json.loads(line) for line in open(f"/tmp/{name}/metrics.jsonl")][-1]
    rows.append((name, result["parallelism"], result["final_eval_loss"], last["tokens_per_s"],
                 last.get("mfu", float("nan"))))
print("| run | parallelism | final eval loss | tokens/s | MFU |")
print("|---|---|---|---|---|")
for name, mode, loss, rate, mfu in rows:
    print(f"| {name} | {mode} | {loss:.4f} | {rate:,.0f} | {mfu:.1%} |")
PY

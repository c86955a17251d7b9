#!/usr/bin/env bash
# One call on a lent GPU machine: the GPU-relevant tests, the model step on CUDA, the MFU
# benchmark, a bf16 `scaling train`, and the same run through Accelerate's FSDP2 plugin with
# per-block compile. Prints tables for BENCHMARKS.md ("## GPU").
#
# The machine has no network; its image has torch, accelerate and most of our dependencies.
# Before the lease, here: `bash benchmarks/gpu_wheels.sh`; then run this with carry=[".whl"]:
#   bash benchmarks/gpu_check.sh 2>&1 | tee $OUT/gpu_check.log
# Each step has its own time limit, so one slow compile cannot eat the whole lease.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
status=0
step() {  # step SECONDS COMMAND...: run, report the time, remember a failure
  local limit=$1 start=$SECONDS
  shift
  echo "== $* (limit ${limit}s)"
  timeout "$limit" "$@" || { echo "!! failed or timed out: $*"; status=1; }
  echo "== $((SECONDS - start)) s"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, accelerate; print('torch', torch.__version__, 'accelerate', accelerate.__version__)"
step 180 python3 -m pytest -q -x -p no:cacheprovider tests/model tests/test_counting.py \
  tests/training/test_schedules.py tests/training/test_trainer.py -k "not kill_9 and not sigterm"
step 120 python3 benchmarks/model_step.py --device cuda --steps 10 --batch 16 --seq-len 1024
step 300 python3 benchmarks/gpu_mfu.py

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
sed 's/^precision = "bf16"$/precision = "bf16"\ncompile = true\nparallelism = "fsdp"/' \
  /tmp/gpu-run.toml > /tmp/gpu-fsdp.toml
step 240 python3 -m scaling train /tmp/gpu-run.toml --out /tmp/gpu-run --no-progress
step 240 python3 -m torch.distributed.run --nproc_per_node 1 -m scaling train /tmp/gpu-fsdp.toml \
  --out /tmp/gpu-fsdp --no-progress
python3 - <<'PY'
import json
print("| run | parallelism | final eval loss | tokens/s | MFU |")
print("|---|---|---|---|---|")
for name in ("gpu-run", "gpu-fsdp"):
    try:
        result = json.load(open(f"/tmp/{name}/result.json"))
        last = [json.loads(line) for line in open(f"/tmp/{name}/metrics.jsonl")][-1]
    except OSError as err:
        print(f"| {name} | missing: {err} | | | |")
        continue
    print(
        f"| {name} | {result.get('parallelism')} | {result.get('final_eval_loss', float('nan')):.4f}"
        f" | {last['tokens_per_s']:,.0f} | {last.get('mfu', float('nan')):.1%} |"
    )
PY
exit $status

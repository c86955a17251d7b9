#!/usr/bin/env bash
# One call on a lent GPU machine: the GPU-relevant tests (no -x: one failure must not hide
# the rest), the model step on CUDA, the MFU benchmark, a bf16 `scaling train`, the same run
# through Accelerate's FSDP2 plugin with per-block compile (its loss beside the single
# process's), and an MoE under compile with graph breaks and recompiles logged. Prints
# tables for BENCHMARKS.md ("## GPU").
#
# The machine has no network; its image has torch, accelerate and most of our dependencies.
# Before the lease, here: `bash benchmarks/gpu_wheels.sh`, then the same script on CPU,
#   GPU_CHECK_DRY_RUN=1 bash benchmarks/gpu_check.sh
# which runs every step at toy sizes on the CPU (so the lease is not spent on a typo); then
# on the GPU, with carry=[".whl"]:
#   bash benchmarks/gpu_check.sh 2>&1 | tee $OUT/gpu_check.log
# Each step has its own time limit, so one slow compile cannot eat the whole lease.
set -uo pipefail
cd "$(dirname "$0")/.."
dry=${GPU_CHECK_DRY_RUN:-0}
if [ -d .whl ] && [ "$dry" != 1 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
# cuBLAS deterministic on CUDA, for the tests that compare runs (tests/conftest.py turns on
# torch's deterministic algorithms where CUDA is present)
export CUBLAS_WORKSPACE_CONFIG=:4096:8
status=0
step() {  # step SECONDS COMMAND...: run, report the time, remember a failure
  local limit=$1 start=$SECONDS
  shift
  echo "== $* (limit ${limit}s)"
  timeout "$limit" "$@" || { echo "!! failed or timed out: $*"; status=1; }
  echo "== $((SECONDS - start)) s"
}

if [ "$dry" = 1 ]; then
  device=cpu scale=toy precision=fp32 out=/tmp/gpu-check-dry
  tests=(tests/model/test_moe.py -k "grouped_mm or cuda")
  step_args=(--device cpu --steps 1 --batch 2 --seq-len 64)
else
  device=cuda scale=full precision=bf16 out=/tmp/gpu-check
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  tests=(tests/model tests/test_counting.py tests/training/test_schedules.py
    tests/training/test_trainer.py tests/training/test_stopping.py -k "not kill_9 and not sigterm")
  step_args=(--device cuda --bf16 --steps 10 --batch 16 --seq-len 1024)
fi
rm -rf "$out" && mkdir -p "$out"
python3 -c "import torch, accelerate; print('torch', torch.__version__, 'accelerate', accelerate.__version__)"
step 300 python3 -m pytest -q -p no:cacheprovider "${tests[@]}"
step 120 python3 benchmarks/model_step.py "${step_args[@]}"
[ "$dry" = 1 ] || step 300 python3 benchmarks/gpu_mfu.py

if [ "$scale" = toy ]; then
  shape='d_model = 64
n_layers = 2
n_heads = 4'
  train='tokens = 65_536
batch_tokens = 8192
micro_batch_size = 8
seq_len = 128'
else
  shape='d_model = 512
n_layers = 8
n_heads = 8'
  train='tokens = 4_194_304
batch_tokens = 65536
micro_batch_size = 32
seq_len = 512'
fi
cat >"$out/run.toml" <<TOML
[model]
vocab_size = 4096
$shape
max_seq_len = 512
[data]
vocab_size = 4096
[train]
$train
precision = "$precision"
eval_interval = 0
TOML
sed "s/^precision = .*\$/&\ncompile = true\nparallelism = \"fsdp\"/" "$out/run.toml" >"$out/fsdp.toml"
# an MoE whose expert width (d_ff 1408 / 32 = 44) the bf16 grouped GEMM cannot take: it must
# fall back to the loop, not crash; compiled, with graph breaks and recompiles in the log
sed "s/^\[model\]\$/[model]\nn_experts = 8\ntop_k = 2\nactivation = \"swiglu\"\ngranularity = 32/; \
s/^precision = .*\$/&\ncompile = true/" "$out/run.toml" >"$out/moe.toml"
[ "$scale" = toy ] && sed -i 's/^granularity = 32$/granularity = 2/' "$out/moe.toml"
step 240 python3 -m scaling train "$out/run.toml" --out "$out/single" --no-progress
step 240 python3 -m torch.distributed.run --standalone --nproc_per_node 1 -m scaling train \
  "$out/fsdp.toml" --out "$out/fsdp" --no-progress
TORCH_LOGS=recompiles,graph_breaks step 240 python3 -m scaling train "$out/moe.toml" \
  --out "$out/moe" --no-progress
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
print("| run | parallelism | final eval loss | tokens/s | MFU |")
print("|---|---|---|---|---|")
for name in ("single", "fsdp", "moe"):
    try:
        result = json.load(open(f"{out}/{name}/result.json"))
        last = [json.loads(line) for line in open(f"{out}/{name}/metrics.jsonl")][-1]
    except OSError as err:
        print(f"| {name} | missing: {err} | | | |")
        continue
    print(
        f"| {name} | {result.get('parallelism')} | {result.get('final_eval_loss', float('nan')):.4f}"
        f" | {last['tokens_per_s']:,.0f} | {last.get('mfu', float('nan')):.1%} |"
    )
PY
exit $status

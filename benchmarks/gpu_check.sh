#!/usr/bin/env bash
# One call on a lent GPU machine, the numbers first and the tests last (a lease that runs out
# still returns the numbers): the MFU table (dense 125M and 350M, eager and compiled; the MoE
# per active FLOP against dense), the trainer against a plain PyTorch loop on CUDA, a bf16
# `scaling train` and the same run through Accelerate's FSDP2 plugin with per-block compile
# (its loss beside the single process's), µP's coordinate check on CUDA against the standard
# parametrization, the GPU-relevant tests (no -x: one failure must not hide the rest), then an
# MoE under compile with graph breaks and recompiles logged. Prints tables for
# BENCHMARKS.md ("## GPU"); each step's output also lands in $OUT/<step>.log.
#
# The machine has no network; its image has torch, accelerate and most of our dependencies.
# Before the lease, here: `bash benchmarks/gpu_wheels.sh`, then the same script on CPU,
#   GPU_CHECK_DRY_RUN=1 bash benchmarks/gpu_check.sh
# which runs every step at toy sizes on the CPU (so the lease is not spent on a typo); then
# on the GPU, with carry=[".whl"]:
#   bash benchmarks/gpu_check.sh
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
logs=${OUT:-/tmp/gpu-check-logs}
mkdir -p "$logs"
status=0
step() {  # step NAME SECONDS COMMAND...: run, log, report the time, remember a failure
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  echo "== $name: $* (limit ${limit}s)"
  timeout "$limit" "$@" 2>&1 | tee "$logs/$name.log" || {
    echo "!! $name failed or timed out"
    status=1
  }
  echo "== $name: $((SECONDS - start)) s"
}

if [ "$dry" = 1 ]; then
  device=cpu scale=toy precision=fp32 out=/tmp/gpu-check-dry
  tests=(tests/model/test_moe.py tests/training/test_coord_check.py -k "grouped_mm or cuda")
  mfu_args=(--device cpu --tiny --steps 2)
  profile_args=(--device cpu --tiny --compile)
  throughput_args=(--device cpu --steps 8 --rounds 1)
  widths=64,128 xdist=()
else
  device=cuda scale=full precision=bf16 out=/tmp/gpu-check
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  # the tests that take the GPU when one is visible (the rest run on the CPU, as in CI)
  tests=(tests/model/test_moe.py tests/model/test_transformer.py tests/training/test_trainer.py
    tests/training/test_stopping.py tests/training/test_coord_check.py
    -k "not kill_9 and not sigterm")
  mfu_args=(--device cuda)
  profile_args=(--device cuda --compile)
  throughput_args=(--device cuda --steps 20 --rounds 2)
  # one torch thread per worker (OMP_NUM_THREADS below): 12 workers of 16 threads on 16 cores
  # got through a third of these tests in 210 s
  widths=128,256,512,1024 xdist=(-n 8)
fi
rm -rf "$out" && mkdir -p "$out"
export SCALING_CACHE="$out/cache"
python3 -c "import torch, accelerate; print('torch', torch.__version__, 'accelerate', accelerate.__version__)"
step mfu 200 python3 benchmarks/gpu_mfu.py "${mfu_args[@]}"
step profile 90 python3 benchmarks/gpu_profile.py "${profile_args[@]}"
step throughput 120 python3 benchmarks/train_throughput.py "${throughput_args[@]}"

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
step single 150 python3 -m scaling train "$out/run.toml" --out "$out/single" --no-progress
step fsdp 150 python3 -m torch.distributed.run --standalone --nproc_per_node 1 -m scaling train \
  "$out/fsdp.toml" --out "$out/fsdp" --no-progress
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
print("| run | parallelism | final eval loss | tokens/s | MFU |")
print("|---|---|---|---|---|")
for name in ("single", "fsdp"):
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
# µP against the standard parametrization at widths 128-1024 (fp32 on the GPU); the slopes
# of log RMS against log width: near 0 under µP
cat >"$out/coord.toml" <<TOML
[model]
vocab_size = 4096
d_model = 128
n_layers = 2
n_heads = 2
max_seq_len = 512
parametrization = "mup"
base_width = 128
[data]
vocab_size = 4096
[train]
seq_len = 256
lr = 2e-3
weight_decay = 0.1
TOML
for p in mup standard; do
  step "coord-$p" 90 python3 -m scaling coord-check "$out/coord.toml" --device "$device" \
    --widths "$widths" --steps 10 --seeds 2 --parametrization "$p"
done
# -v: each test's outcome as it ends, so a step cut by its limit still says which failed
OMP_NUM_THREADS=1 step tests 180 python3 -m pytest -v -p no:cacheprovider -p no:benchmark \
  "${xdist[@]}" "${tests[@]}"
TORCH_LOGS=recompiles,graph_breaks step moe 200 python3 -m scaling train "$out/moe.toml" \
  --out "$out/moe" --no-progress
exit $status

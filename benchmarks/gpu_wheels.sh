#!/usr/bin/env bash
# Run HERE (where pip reaches the registry), before benchmarks/gpu_check.sh on a lent GPU
# machine: that machine has no network and its image (Python 3.12, torch, accelerate, pandas,
# scipy, matplotlib, typer, rich, tokenizers, pyarrow, pytest, hypothesis) lacks these of our
# dependencies. They travel as wheels in .whl/ (git-ignored): pass carry=[".whl"] to the run.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl
platforms=()
for n in 2_17 2_27 2_28 2_34; do platforms+=(--platform "manylinux_${n}_x86_64"); done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" --platform manylinux2014_x86_64 -d .whl \
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
  tomli-w==1.2.0 submitit==1.5.4 cloudpickle==3.1.3
ls -l .whl

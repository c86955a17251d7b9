"""`python -m scaling` and the `scaling` command."""

import os
import sys


def main() -> None:
    # OpenMP threads that wait by spinning (libgomp's default) turn a busy CPU into a 10x
    # slowdown: a tiny model's step is many short parallel regions, and each waits for a
    # thread the other process holds (57 s against 7 s for 200 steps beside one competing
    # process, benchmarks/cpu_threads.py). Waiting threads that sleep cost nothing measurable
    # on an idle machine. Set before torch loads libgomp; the launcher's children inherit it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # A Ctrl-C while the command line is still importing (numpy and the laws: a second or
    # more on a busy machine) interrupts nothing that started: one line and exit 130, not a
    # traceback from inside an import. Each command handles its own signals once it runs.
    try:
        from scaling.cli import app
    except KeyboardInterrupt:
        print("interrupted while starting; nothing was done", file=sys.stderr)
        raise SystemExit(130) from None
    app()


if __name__ == "__main__":
    main()

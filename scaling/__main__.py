"""`python -m scaling` and the `scaling` command."""

import os
import sys


def main() -> None:
    # OpenMP threads that wait by spinning turn a busy CPU into a crawl: a tiny model's step is
    # many short parallel regions, each waiting for a thread another process holds. With every
    # core busy a 200-step run took 17x as long spinning, 1.6x sleeping (benchmarks/
    # cpu_threads.py); beside the demo's process it took 57 s with libgomp's own policy (spin a
    # while, then sleep) and 7 s sleeping. Idle, the policies are within 2%. Set before torch
    # loads libgomp; the launcher's children inherit it.
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

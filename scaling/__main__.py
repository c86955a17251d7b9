"""`python -m scaling` and the `scaling` command."""

import sys


def main() -> None:
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

"""`scaling export`: a trained run's weights in a format other tools load."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scaling.cli import app, errors, fail


@app.command()
def export(
    run_dir: Annotated[
        Path, typer.Argument(metavar="RUN_DIR", help="A finished run (its export/ folder).")
    ],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="The folder to write.")],
    fmt: Annotated[str, typer.Option("--format", help="hf: Hugging Face transformers.")] = "hf",
) -> None:
    """Write a trained model so that Hugging Face transformers loads it without custom code
    (AutoModelForCausalLM.from_pretrained(OUT)): a dense model with RoPE, SwiGLU, RMSNorm and
    no biases is a Llama; other architectures are refused with the reason.

    Example: scaling export RUNS/runs/<run_id> exported-model
    """
    if fmt != "hf":
        raise fail(f"--format {fmt!r}: hf is the format there is")
    from scaling.rundir import RunDir

    weights = RunDir(run_dir).export
    if not (weights / "model.safetensors").is_file():
        raise fail(f"{weights}: no trained weights (has the run finished?)")
    from scaling.model import load_pretrained
    from scaling.model.export_hf import export_hf

    with errors():
        export_hf(load_pretrained(weights), out)
    typer.echo(f"wrote {out} (a Llama for transformers)")

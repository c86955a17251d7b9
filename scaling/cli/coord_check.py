"""`scaling coord-check`: do a parametrization's activations keep their size across widths?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from scaling.cli import JsonOption, SetOption, _parse_override, app, errors, fail, present


@app.command("coord-check")
def coord_check(
    config: Annotated[
        Path,
        typer.Argument(
            metavar="SPEC_OR_CONFIG",
            help="A sweep spec, a run's config.json, or a TOML with [model], [data], [train].",
        ),
    ],
    widths: Annotated[
        str, typer.Option(help="The widths (d_model) to train, comma-separated, at least two.")
    ] = "64,128,256,512",
    steps: Annotated[int, typer.Option(help="Steps at each width (step 1: at init).")] = 10,
    seeds: Annotated[int, typer.Option(help="Initialisations averaged at each width.")] = 2,
    layers: Annotated[
        int | None, typer.Option(help="n_layers (a spec's are chosen per size; default 2).")
    ] = None,
    batch: Annotated[int, typer.Option(help="Windows in the one fixed batch.")] = 8,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: the config's).")] = None,
    parametrization: Annotated[
        str | None,
        typer.Option(
            help="standard, mup or completep instead of the config's (the standard one drops "
            "its base_width and base_depth: the negative control of a µP config)."
        ),
    ] = None,
    device: Annotated[
        str, typer.Option(help="cpu or cuda (fp32 either way; cuda: the first visible GPU).")
    ] = "cpu",
    set_: SetOption = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write the figure (RMS against width) to this file.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Train a few steps at each width and report the size (RMS) of every layer's output:
    embedding, each block's attention and feed-forward, logits; and per layer the slope of
    log RMS against log width at the last step. Under µP (model.parametrization = "mup")
    every slope stays near 0; under the standard parametrization the logits' and blocks'
    grow with width.

    Example: scaling coord-check sweep.toml --set parametrization=mup --set base_width=64
    """
    try:
        width_list = [int(w) for w in widths.split(",")]
    except ValueError:
        raise fail(f"--widths {widths!r}: expected integers separated by commas") from None
    if len(width_list) < 2 or min(width_list) < 1 or len(set(width_list)) != len(width_list):
        raise fail(f"--widths {widths!r}: two or more different positive widths")
    for name, value in (("--steps", steps), ("--seeds", seeds), ("--batch", batch)):
        if value < 1:
            raise fail(f"{name} {value}: must be at least 1")
    if layers is not None and layers < 1:
        raise fail(f"--layers {layers}: must be at least 1")
    if lr is not None and not lr > 0:
        raise fail(f"--lr {lr}: must be a positive number")
    if device not in ("cpu", "cuda"):
        raise fail(f"--device {device!r}: cpu or cuda")
    if plot is not None:
        from scaling.fileio import check_output_file

        with errors():
            check_output_file(plot)

    import torch

    torch.set_flush_denormal(True)  # before torch starts its worker threads
    if device == "cuda" and not torch.cuda.is_available():
        raise fail("--device cuda: no GPU visible to this process (torch.cuda.is_available())")
    with errors():
        overrides = dict(map(_parse_override, set_ or []))
        if parametrization is not None:
            overrides["parametrization"] = parametrization
            if parametrization == "standard":
                overrides.update(base_width=None, base_depth=None)
        model, data, train = _configs(config, overrides, layers, lr)
        for width in width_list:
            if width % model.head_dim:
                raise fail(f"--widths: {width} is not a multiple of head_dim ({model.head_dim})")

    from rich.console import Console

    from scaling.data.prepare import prepare_data
    from scaling.training.coord_check import coord_check as run_check

    console = Console(stderr=True)
    with errors():
        tokens = prepare_data(data, progress=not as_json).tokens("train")
    with console.status("coordinate check") as status:

        def on_width(width: int, seed: int) -> None:
            status.update(f"coordinate check: width {width}, seed {seed + 1} of {seeds}")

        try:
            result = run_check(
                model, train, tokens, width_list, steps, batch, seeds, on_width, device
            )
        except ValueError as err:
            raise fail(str(err)) from None
    if plot is not None:
        from scaling.fileio import atomic_path

        with errors(), atomic_path(plot) as tmp:
            result.figure().savefig(tmp, format=plot.suffix.lstrip(".") or "png", dpi=120)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    present.coord_check_table(result)
    if plot is not None:
        typer.echo(f"wrote {plot}")


def _configs(path: Path, overrides: dict, layers: int | None, lr: float | None):
    """The model (at its own or the first width), data and train configs of a spec or a run
    config, ``overrides`` applied to the model."""
    from scaling.config import ConfigError, DataConfig, ModelConfig, TrainConfig, read_toml

    if path.suffix != ".json" and "grid" in read_toml(path):
        from scaling.planning.spec import load_spec

        spec = load_spec(path)
        shape = spec.shape
        width = shape.head_dim * shape.kv_group * 2
        train_fields = spec.train_defaults
        if lr is None and not isinstance(train_fields.get("lr", 0.0), float | int):
            raise ConfigError(
                f"{path}: train.lr is {train_fields['lr']!r}, not a number; give --lr"
            )
        fields = {
            **spec.architecture,
            "d_model": width,
            "n_layers": layers or 2,
            "n_heads": width // shape.head_dim,
            "n_kv_heads": width // shape.head_dim // shape.kv_group if shape.kv_group > 1 else None,
            **overrides,
        }
        data = spec.data
        train_fields.pop("batch_tokens", None)
        train = TrainConfig.model_validate(train_fields | ({"lr": lr} if lr else {}))
    else:
        from scaling.config import load_run_config

        run = load_run_config(path)
        fields = run.model.model_dump() | ({"n_layers": layers} if layers else {}) | overrides
        data = run.data
        train = run.train.model_copy(update={"lr": lr}) if lr else run.train
    from pydantic import ValidationError

    from scaling.config import describe_validation_error

    try:
        model = ModelConfig.model_validate(fields)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, f"{path}: [model] with --set")) from None
    assert isinstance(data, DataConfig)
    return model, data, train

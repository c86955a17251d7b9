"""The demo's own sections of its spec (scaling/specs/demo.toml), for benchmarks that train
the demo's tiny byte-level models in a design of their own."""

from __future__ import annotations

import re
from importlib import resources


def demo_sections(*names: str) -> str:
    """The text of the demo spec's ``[name]`` tables (comments included), in its order."""
    text = resources.files("scaling.specs").joinpath("demo.toml").read_text()
    tables = re.split(r"(?m)^(?=\[)", text)
    found = [t for t in tables if re.match(r"\[([a-z_]+)\]", t) and t[1:].split("]")[0] in names]
    if len(found) != len(names):
        raise SystemExit(f"scaling/specs/demo.toml: no table {names} (found {len(found)})")
    return "".join(found)

"""scaling: plan, train and fit scaling-law experiments for language models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scaling")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

"""The project's errors, at the ground of every import: a bad input phrased for the user
(``ConfigError``) and a fit that cannot be made (``FitError``). Imports nothing of the project,
so that a light module (``scaling.published``) and every stage can raise them without importing
the stage that usually does (``scaling.config`` re-exports ``ConfigError``, ``scaling.fitting``
``FitError``)."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A bad input, already phrased as one line for the user (file, field, what is allowed).

    A bad value of a library parameter carries ``param`` and ``value``: the library says
    ``loss='cauchy': must be ...`` in its own names, and the CLI's one error handler says
    ``--loss 'cauchy': must be ...`` for the flag that set it (``phrased``)."""

    def __init__(self, message: str, *, param: str | None = None, value: Any = None):
        self.param, self.value, self.detail = param, value, message
        super().__init__(f"{param}={value!r}: {message}" if param else message)

    def phrased(self, flags: dict[str, str]) -> str:
        """The message with the library's parameter name replaced by its CLI flag."""
        if self.param is not None and self.param in flags:
            return f"{flags[self.param]} {self.value!r}: {self.detail}"
        return str(self)


class FitError(ConfigError):
    """A fit that cannot be made from these points, or a question a law cannot answer."""

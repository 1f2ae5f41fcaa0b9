"""The one exception type the library raises for bad input, and the one family of warnings.

Every check on user data ends in :class:`InputError`, which carries where the problem is (file, line,
data row, column) and why, so the command line can print one readable line instead of a traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: a malformed file, a missing column, an impossible value.

    Attributes
    ----------
    reason : str
        Why the input was refused, in words a user understands.
    file : str or None
        The file the value came from (None for a DataFrame passed in directly).
    line : int or None
        1-based line in the file (the header is line 1).
    row : int or None
        1-based data row (the first row under the header is row 1); for a DataFrame, its position.
    column : str or None
        The column holding the bad value.
    """

    def __init__(self, reason: str, *, file: str | None = None, line: int | None = None,
                 row: int | None = None, column: str | None = None):
        self.reason = reason
        self.file = file
        self.line = line
        self.row = row
        self.column = column
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.line is not None:
            where.append(f"line {self.line}" + (f" (row {self.row})" if self.row is not None else ""))
        elif self.row is not None:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column '{self.column}'")
        return (", ".join(where) + ": " if where else "") + self.reason

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "row": self.row, "column": self.column,
                "reason": self.reason}


class SettingsError(InputError):
    """An option value that is not allowed (``key`` names the option): same one-line contract."""

    def __init__(self, key: str, reason: str, **where):
        self.key = key
        super().__init__(f"setting '{key}': {reason}", **where)


# ------------------------------------------------------------------------------------------------
# warnings: one family, so a user can filter all of pfps-meta's with ``PfpsWarning``


class PfpsWarning(UserWarning):
    """Base class of every warning pfps-meta issues."""


class InputWarning(PfpsWarning):
    """Input that is accepted but looks suspicious (an asymmetric CI, an SD that may be an SE)."""


class ConvergenceWarning(PfpsWarning):
    """An iterative estimator stopped without meeting its tolerance, or was moved to the boundary."""


class SmallStudyWarning(PfpsWarning):
    """Small-study tests with fewer than 10 studies have little power (Sterne et al. 2011, BMJ 343:d4002)."""

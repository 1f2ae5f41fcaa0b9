"""Stage 1 of the pipeline: read a CSV file strictly, keeping where every value came from.

Values are read as text. This module also reads one cell as a number (:func:`numeric_column`), so that
every path (a CSV, a spec's evidence-base trials, an extraction sheet) understands the same cells the
same way, and a bad cell is reported with its file, line and column. Input files are only ever opened
for reading.

Missing values: an empty cell and the tokens of :data:`MISSING_TOKENS` (NA, N/A, n.a., NaN, n.r., nr,
NR, "-", "not reported"; case ignored) all mean "not given", in every table.

Typing slips in a numeric cell are either read with a warning saying how (a Unicode minus or dash
before a number: "\u22122.5" is -2.5) or refused with the reason (a comma decimal "2,5", a percentage
"45%", an interval or a "±" in one cell "3.1 (2.0 to 4.2)", "3.1 ± 1.1").
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from pfps_meta.errors import InputError, InputWarning

LINE_COLUMN = "_line"   # 1-based line of each data row in its file (header = line 1)
ROW_COLUMN = "_row"     # a row's 1-based position in its whole file, kept when a table is subset
FILE_COLUMN = "_file"   # the file a row came from, kept when tables from several files are merged

# What a paper or a person types for "not given"; compared in lower case after stripping.
MISSING_TOKENS = frozenset({"", "na", "n/a", "n.a.", "nan", "n.r.", "nr", "-", "\u2013", "\u2014", "\u2212",
                            "not reported"})
_MINUS_SIGNS = ("\u2212", "\u2013", "\u2014")      # Unicode minus, en dash, em dash typed before a number
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def read_text(path, kind: str) -> str:
    """The UTF-8 text of an input file (a BOM is dropped); every way reading can fail is an InputError
    naming the file (and, for bad bytes, the line). ``kind`` words what the file should be."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", file=name) from None
    except IsADirectoryError:
        raise InputError(f"is a directory, not {kind}", file=name) from None
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", file=name) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError("file is not UTF-8 text", file=name, line=line) from None


def read_csv(path) -> pd.DataFrame:
    """Read ``path`` into a DataFrame of strings, with a ``_line`` column giving each row's line.

    Refuses (with :class:`InputError`): a missing or unreadable file, a file that is not UTF-8, an
    empty file, a header with empty or repeated names, and a row whose number of fields differs from
    the header's. Blank lines and lines starting with ``#`` are skipped. ``df.attrs["source"]`` holds
    the path.
    """
    path = Path(path)
    name = str(path)
    text = read_text(path, "a CSV file")
    if not text.strip():
        raise InputError("file is empty", file=name)

    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header = None
    records, lines = [], []
    try:
        for fields in reader:
            line = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            if header is None:
                if fields[0].lstrip().startswith("#"):
                    continue
                header = [f.strip() for f in fields]
                _check_header(header, name, line)
                continue
            if fields[0].lstrip().startswith("#"):
                continue
            if len(fields) != len(header):
                raise InputError(f"row has {len(fields)} fields but the header has {len(header)}",
                                 file=name, line=line, row=len(records) + 1)
            records.append([f.strip() for f in fields])
            lines.append(line)
    except csv.Error as exc:
        raise InputError(f"malformed CSV ({exc})", file=name, line=reader.line_num) from None
    if header is None:
        raise InputError("file has no header row", file=name)
    frame = pd.DataFrame(records, columns=header, dtype=object)
    frame[LINE_COLUMN] = lines
    frame.attrs["source"] = name
    return frame


def _check_header(header, name, line):
    seen = set()
    for position, column in enumerate(header, start=1):
        if not column:
            raise InputError(f"header field {position} is empty", file=name, line=line)
        if column in seen:
            raise InputError(f"column name '{column}' appears twice in the header", file=name, line=line)
        seen.add(column)


# ------------------------------------------------------------------------------------------------
# where a row came from, and reading one cell


def where_in_table(df: pd.DataFrame, position: int) -> dict:
    """File, line and row of the row at ``position`` (keywords for :class:`InputError`)."""
    line = None
    if LINE_COLUMN in df.columns:
        value = df[LINE_COLUMN].iloc[position]
        line = None if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)
    row = int(df[ROW_COLUMN].iloc[position]) if ROW_COLUMN in df.columns else position + 1
    source = df[FILE_COLUMN].iloc[position] if FILE_COLUMN in df.columns else df.attrs.get("source")
    return {"file": source, "line": line, "row": row}


def place(where: dict, column: str | None = None) -> str:
    """``where`` (and a column) in the words of an InputError, for a warning's message."""
    return InputError("", column=column, **where).message.rstrip(": ") or "data"


def is_missing(cell) -> bool:
    """True for None, NaN, an empty cell or one of :data:`MISSING_TOKENS`."""
    if cell is None or cell is pd.NA or cell is pd.NaT:
        return True
    if isinstance(cell, (float, np.floating)):
        return math.isnan(cell)
    if isinstance(cell, str):
        return cell.strip().lower() in MISSING_TOKENS
    return False


class _NotANumber(ValueError):
    """A cell that cannot be read as a number; the message says why."""


def read_number(cell):
    """``(value, how)``: the cell as a float (None when missing) and, when the text needed reading, a
    sentence saying how it was read. Raises ``ValueError`` with the reason when the cell is refused."""
    if is_missing(cell):
        return None, ""
    if isinstance(cell, (bool, np.bool_)):
        raise _NotANumber(f"'{cell}' is not a number")
    if isinstance(cell, (int, float, np.integer, np.floating)):
        return float(cell), ""
    text = str(cell).strip()
    how = ""
    if text[0] in _MINUS_SIGNS:
        how = f"'{text}' read as -{text[1:].strip()} (the first character is a dash or Unicode minus)"
        text = "-" + text[1:].strip()
    if "%" in text:
        raise _NotANumber(f"'{text}' is a percentage: give the number this column holds, without '%'")
    if "\u00b1" in text or "+/-" in text or "+-" in text:
        raise _NotANumber(f"'{text}' holds a value with a \u00b1 part: give each number in its own column "
                          "(a mean in mean and its SD in sd; an estimate's CI bounds in ci_low and ci_high)")
    if len(_NUMBER.findall(text)) > 1 and re.search(r"[\s(\[;]|\bto\b", text):
        raise _NotANumber(f"'{text}' holds several numbers (an estimate with its interval?): give one number "
                          "per cell, the interval's bounds in their own columns (ci_low, ci_high)")
    if "," in text:
        shown = text.replace(",", ".") if re.fullmatch(r"[+-]?\d+,\d+", text) else "2.5"
        raise _NotANumber(f"'{text}' has a comma: write a decimal with a point ({shown}) and no thousands "
                          "separators")
    if not _plain_float(text):
        raise _NotANumber(f"'{text}' is not a number")
    return float(text), how


def _plain_float(text: str) -> bool:
    """A decimal number as people type it (no '_' digit groups, no hex, no words but inf/nan)."""
    return re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?inf(inity)?", text, re.IGNORECASE) is not None


def numeric_column(df: pd.DataFrame, column: str, *, integer=False, minimum=None, above=None,
                   allow_missing=False, stacklevel=2) -> np.ndarray:
    """Column ``column`` as floats, refusing text, missing values and values out of range.

    ``minimum`` is inclusive (``value >= minimum``), ``above`` exclusive (``value > above``). A cell read
    after a fix (a Unicode minus) gives an :class:`InputWarning` naming where and how it was read (its
    ``stacklevel``, as :func:`warnings.warn`'s, names the caller; a wrapper adds one).
    """
    series = df[column]
    if isinstance(series.dtype, np.dtype):
        out = clean_numbers(series.to_numpy(), integer, minimum, above, allow_missing)
        if out is not None:
            return out
    out = np.empty(len(df))
    for position, cell in enumerate(series.tolist()):
        try:
            value, how = read_number(cell)
        except ValueError as exc:
            raise InputError(str(exc), column=column, **where_in_table(df, position)) from None
        if how:
            warnings.warn(f"{place(where_in_table(df, position), column)}: {how}", InputWarning, stacklevel=stacklevel)
        if value is None:
            if allow_missing:
                out[position] = np.nan
                continue
            text = "" if cell is None or (isinstance(cell, float) and math.isnan(cell)) else str(cell).strip()
            reason = "value is missing" + (f" ('{text}' means not given)" if text else "")
            raise InputError(reason, column=column, **where_in_table(df, position))
        if math.isfinite(value) and abs(value) > 1e12:
            raise InputError(f"{_fmt(value)} is too large to be a real trial value (more than 1e12 in size)",
                             column=column, **where_in_table(df, position))
        if not math.isfinite(value):
            raise InputError(f"value {value} is not finite", column=column, **where_in_table(df, position))
        if integer and value != round(value):
            raise InputError(f"{_fmt(value)} is not a whole number", column=column, **where_in_table(df, position))
        if minimum is not None and value < minimum:
            raise InputError(f"{_fmt(value)} is below the allowed minimum {_fmt(minimum)}",
                             column=column, **where_in_table(df, position))
        if above is not None and value <= above:
            raise InputError(f"{_fmt(value)} must be greater than {_fmt(above)}", column=column,
                             **where_in_table(df, position))
        out[position] = value
    return out


def clean_numbers(values, integer=False, minimum=None, above=None, allow_missing=False):
    """A column that is already numbers (a numpy array of ints or floats) as a new float array when every
    value passes the checks of :func:`numeric_column`, else None: any refusal (or warning) is left to that
    function's cell-by-cell loop, so that its message is the same.

    The checks are read off the column's least and greatest values (NaN in either means a NaN cell; an
    infinite value is outside +-1e12), so a clean column costs two reductions; a column with empty cells
    where they are allowed is checked value by value (vectorised)."""
    if not isinstance(values, np.ndarray) or values.dtype.kind not in "fiu":
        return None
    out = np.array(values, dtype=float, copy=True)
    if not out.size:
        return out
    low, high = float(out.min()), float(out.max())
    if low == low and high == high:         # no NaN: every check is one comparison of the extremes
        ok = -1e12 <= low and high <= 1e12 and (minimum is None or low >= minimum) \
            and (above is None or low > above) and (not integer or values.dtype.kind != "f"
                                                     or bool((out == np.round(out)).all()))
        return out if ok else None
    if not allow_missing:
        return None
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(out) & (np.abs(out) <= 1e12)
        if integer:
            ok &= out == np.round(out)
        if minimum is not None:
            ok &= out >= minimum
        if above is not None:
            ok &= out > above
        ok |= np.isnan(out)
    return out if ok.all() else None


class Columns:
    """The columns of one table, each taken out of its DataFrame once.

    ``df[name]`` builds a Series (about 10 us), which on a table of a dozen studies costs more than the
    checks; this reads a column's values once (a numpy array, or a pandas extension array for text and
    other pandas types) and keeps them. :meth:`numeric` is :func:`numeric_column` with the same checks,
    results, refusals and warnings (a column that is not clean is handed to that function). ``df`` is kept
    for the location of a refusal (:func:`where_in_table`). The values are the table's own: never modify
    them.
    """

    __slots__ = ("df", "names", "length", "_position", "_values")

    def __init__(self, df: pd.DataFrame, names: list | None = None):
        self.df = df
        self.names = df.columns.tolist() if names is None else names     # names: df's, when known already
        self.length = len(df)
        self._position = {name: position for position, name in enumerate(self.names)}
        self._values = {}

    def __contains__(self, name) -> bool:
        return name in self._position

    def values(self, name):
        """Column ``name``'s values as pandas holds them (not a copy)."""
        values = self._values.get(name)
        if values is None:
            position = self._position[name]
            # DataFrame._get_column_array (pandas >= 1.3) hands over the column's array without building a
            # Series; the public way (a Series, then its array) is the fallback and gives the same values
            getter = getattr(self.df, "_get_column_array", None)
            if getter is not None:
                values = getter(position)
            else:
                series = self.df.iloc[:, position]
                values = series.to_numpy() if isinstance(series.dtype, np.dtype) else series.array
            self._values[name] = values
        return values

    def numeric(self, name, *, integer=False, minimum=None, above=None, allow_missing=False) -> np.ndarray:
        """:func:`numeric_column` of this table's column ``name`` (a new float array)."""
        out = clean_numbers(self.values(name), integer, minimum, above, allow_missing)
        if out is None:
            out = numeric_column(self.df, name, integer=integer, minimum=minimum, above=above,
                                 allow_missing=allow_missing, stacklevel=3)
        return out


def _fmt(value):
    return f"{value:g}"


def require_columns(df: pd.DataFrame, columns, purpose: str):
    """Refuse a table that lacks any of ``columns``, naming every missing one."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        names = ", ".join(f"'{c}'" for c in missing)
        raise InputError(f"missing column{'s' if len(missing) > 1 else ''} {names} needed for {purpose}",
                         file=df.attrs.get("source"))


def refuse_duplicates(df: pd.DataFrame, keys, column: str, describe):
    """Refuse the first key that repeats; ``describe(key, first_row)`` words the reason."""
    first_seen = {}
    for position, key in enumerate(keys):
        if key in first_seen:
            raise InputError(describe(key, first_seen[key]), column=column, **where_in_table(df, position))
        first_seen[key] = position + 1


def text_column(df: pd.DataFrame, column: str, what: str = "label") -> list[str]:
    """Column ``column`` as stripped text; refuses an empty (or NA) cell."""
    out = []
    for position, cell in enumerate(df[column].tolist()):
        if is_missing(cell):
            raise InputError(f"{column} {what} is empty", column=column, **where_in_table(df, position))
        out.append(str(cell).strip())
    return out

"""Stage 1 of the pipeline: read a CSV file strictly, keeping where every value came from.

Values are read as text; turning them into numbers is validation's job (``validate.py``), so that a bad
cell is reported with its file, line and column. Input files are only ever opened for reading.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from pfps_meta.errors import InputError

LINE_COLUMN = "_line"   # 1-based line of each data row in its file (header = line 1)


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

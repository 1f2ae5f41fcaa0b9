"""Writing output files: every write is atomic (a temporary file in the same folder, then a rename), so an
interrupted run never leaves a half-written file. A leaf module: no imports from the package."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def umask_mode(mode: int) -> int:
    """``mode`` as the umask would leave it for a newly created file or folder."""
    return mode & ~_umask()


def atomic_write_bytes(path, data: bytes):
    """Write ``data`` to ``path`` atomically; the file gets the mode the umask gives a new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, umask_mode(0o666))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str):
    atomic_write_bytes(path, text.encode("utf-8"))

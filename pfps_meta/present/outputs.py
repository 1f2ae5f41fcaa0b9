"""Writing output files without destroying what a path points at.

Every write is atomic (a temporary file in the same folder, then a rename), so an interrupted run never
leaves a half-written file. Before anything is written, the target is checked (:func:`check_target`):
a device, a named pipe, a socket, a folder where a file is wanted (or a file where a folder is wanted)
and any input file of the run are refused with an :class:`~pfps_meta.errors.InputError`. A symbolic
link is written through: its target gets the new content (after the same checks on the target) and the
link itself stays a link. Only :mod:`pfps_meta.errors` is imported from the package.

The input files of a run are protected twice: the command line checks each output path against them
before any work starts, and :func:`protect` registers them for the run so that every write through this
module (figures included) refuses them too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from pfps_meta.errors import InputError

_PROTECTED: list[tuple[str, tuple | None]] = []       # (real path, (st_dev, st_ino) or None) of the run's inputs


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def umask_mode(mode: int) -> int:
    """``mode`` as the umask would leave it for a newly created file or folder."""
    return mode & ~_umask()


def _identity(path) -> tuple | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _inputs(paths) -> list[tuple[str, tuple | None]]:
    return [(os.path.realpath(p), _identity(p)) for p in paths if p is not None and str(p) != ""]


@contextlib.contextmanager
def protect(paths):
    """Within the block, every write through this module refuses ``paths`` (the input files of a run:
    compared by resolved path and by device and inode, so a hard link counts as the same file)."""
    added = _inputs(paths)
    _PROTECTED.extend(added)
    try:
        yield
    finally:
        for entry in added:
            _PROTECTED.remove(entry)


def _kind(mode: int, noun: str = "file") -> str | None:
    """Why a file of this type cannot be replaced by an output, or None for a regular file or folder."""
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return f"is a device, not a {noun}"
    if stat.S_ISFIFO(mode):
        return f"is a named pipe, not a {noun}"
    if stat.S_ISSOCK(mode):
        return f"is a socket, not a {noun}"
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return None
    return "is neither a regular file nor a folder"


def _is_input(real: str, identity, inputs) -> str | None:
    for path, ident in inputs:
        if path == real or (identity is not None and ident == identity):
            return path
    return None


def check_target(path, *, what: str = "--out", folder: bool = False, inputs=()) -> Path:
    """The path an output may be written to, after the checks; raises InputError naming ``what``.

    Refused: an empty path; a device, named pipe or socket; a folder when ``folder`` is False (a file
    output) or a file when it is True; a symbolic link loop, or a link whose target's folder does not
    exist; and any of ``inputs`` (plus the paths registered with :func:`protect`). For a folder output,
    a folder holding one of the inputs is refused too (the report swaps the whole folder). A symbolic
    link is followed: the returned path is its final target, so the link itself is never replaced.
    """
    text = os.fspath(path) if isinstance(path, os.PathLike) else path
    if not isinstance(text, str):
        raise InputError(f"{what} must be a path (got {type(path).__name__})")
    if not text.strip():
        raise InputError(f"{what} is empty: give a {'folder' if folder else 'file'} name")
    if "\x00" in text:
        raise InputError(f"{what} contains a NUL character", file=repr(text))
    original = Path(text)
    is_link = os.path.islink(original)
    try:
        real = Path(os.path.realpath(original, strict=False))
        info = os.stat(original)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{what} is a symbolic link loop; nothing was written", file=text) from None
        if exc.errno == errno.ENOTDIR:
            raise InputError(f"{what}: a part of this path is a file, not a folder; nothing was written",
                             file=text) from None
        raise InputError(f"{what}: cannot look at this path ({exc.strerror})", file=text) from None
    shown = text if not is_link else f"{text} (a symbolic link to {real})"
    if info is not None:
        reason = _kind(info.st_mode, "folder" if folder else "file")
        if reason:
            raise InputError(f"{what} {reason}; nothing was written", file=shown)
        if stat.S_ISDIR(info.st_mode) and not folder:
            raise InputError(f"{what} names a folder, not a file; nothing was written", file=shown)
        if stat.S_ISREG(info.st_mode) and folder:
            raise InputError(f"{what} names a file, not a folder; nothing was written", file=shown)
    else:
        parent = real.parent
        if is_link and not parent.is_dir():
            raise InputError(f"{what} is a symbolic link whose target's folder does not exist; nothing was "
                             "written", file=shown)
        for ancestor in [parent, *parent.parents]:
            if ancestor.exists():
                if not ancestor.is_dir():
                    raise InputError(f"{what}: {ancestor} is a file, not a folder; nothing was written", file=text)
                break
    every = _inputs(inputs) + list(_PROTECTED)
    clash = _is_input(str(real), None if info is None else (info.st_dev, info.st_ino), every)
    if clash:
        raise InputError(f"{what} names an input file of this run ({clash}); choose another name, nothing was "
                         "written", file=text)
    if folder:
        inside = [p for p, _ in every if Path(p).is_relative_to(real)]
        if inside:
            raise InputError(f"{what} is a folder holding an input file of this run ({inside[0]}); choose a "
                             "folder of its own, nothing was written", file=text)
    return real


def atomic_write_bytes(path, data: bytes, *, what: str = "output", inputs=()) -> Path:
    """Write ``data`` to ``path`` atomically, after :func:`check_target` (a symbolic link is written
    through to its target); the file gets the mode the umask gives a new file. Returns the path
    written. Any failure to write is an InputError naming the file, and leaves it as it was."""
    real = check_target(path, what=what, inputs=inputs)
    tmp = None
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=real.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, umask_mode(0o666))
        try:                            # checked again just before the rename: the path may have changed
            now = os.lstat(real)
        except FileNotFoundError:
            now = None
        if now is not None and (stat.S_ISLNK(now.st_mode) or _kind(now.st_mode) or stat.S_ISDIR(now.st_mode)):
            raise InputError(f"{what} changed while it was being written; nothing was written", file=str(path))
        os.replace(tmp, real)
        tmp = None
    except OSError as exc:
        raise InputError(f"{what}: cannot write file ({exc.strerror or exc})", file=str(path)) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return real


def atomic_write_text(path, text: str, **checks) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), **checks)


def run_inputs(loaded=(), files=()) -> list[Path]:
    """The input files of a run: each loaded spec's file, the four tables of its data folder and every
    analysis's own data file (``loaded`` as returned by ``specs.load_all``), plus ``files`` (a CSV given,
    an extraction sheet, a design)."""
    paths = [Path(f) for f in files if f]
    for spec, _ in loaded:
        paths.append(Path(spec.path))
        paths += [Path(spec.data_dir) / name for name in ("trials.csv", "outcomes.csv", "effects.csv", "published.csv")]
        paths += [Path(a.data) for a in spec.analyses if getattr(a, "data", None)]
    return paths

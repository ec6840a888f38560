"""A table handed from one step to the next: a Parquet file plus what is known about it."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator


@dataclass
class TableFile:
    """A Parquet file written by a step, its row count, column types and extra facts."""

    path: str
    rows: int
    columns: dict[str, str]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Access:
    """How to reach a location: fsspec options (credentials, endpoint) for remote paths, and
    SQLAlchemy engine options (pool, timeouts) for databases."""

    storage_options: dict[str, Any] = field(default_factory=dict)
    engine_options: dict[str, Any] = field(default_factory=dict)


UMASK = os.umask(0o022)  # read once (the call sets it), put back at once
os.umask(UMASK)


@contextlib.contextmanager
def atomic_file(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary file beside ``path`` to write; renamed onto ``path`` when the block succeeds,
    removed when it fails, so a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    try:
        yield Path(temp)
        os.chmod(temp, 0o666 & ~UMASK)  # mkstemp makes it owner-only; the file is for readers too
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Write JSON to ``path`` in one step: a reader sees the old file or the new one."""
    with atomic_file(path) as staged:
        staged.write_text(json.dumps(data, indent=2, default=str))


try:
    _RENAMEAT2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)  # Linux (glibc 2.28+, musl 1.2.4+)
except (OSError, TypeError):  # no C library to open by that name (Windows): two renames
    _RENAMEAT2 = None
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``): every lookup
    of either name sees the old or the new entry, never none. False where the system or the
    filesystem cannot (then nothing was changed)."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def remove_path(path: Path) -> None:
    """Remove a file, a link or a folder tree, whichever ``path`` is; absent is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def swap_folder(staged: Path, target: Path) -> None:
    """Put a staged folder at ``target`` whole, in one exchange of the two names where the
    system can, so a reader finds the old folder or the new one, never a mix and never none.
    Elsewhere the old folder is renamed away first (``.<name>.old-<id>``), then the new one in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and exchange(staged, target):
        remove_path(staged)  # now the old folder
        return
    backup = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        os.replace(target, backup)
    os.replace(staged, target)
    remove_path(backup)

"""A table handed from one step to the next: a Parquet file plus what is known about it."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import json
import os
import shutil
import tempfile
import time
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


STAGING_FOLDER = ".staging"  # inside the storage folder: steps' outputs before the IO manager commits them
# A staging folder whose writer cannot be asked (another host's, or one named before folders
# carried their writer) is a leftover once nothing in it changed for this long.
STAGING_STALE_SECONDS = 24 * 3600


def staging_folder(storage_dir: str | Path) -> Path:
    """A new private folder in ``<storage>/.staging`` for one step's output (see :func:`writer_folder`)."""
    return writer_folder(Path(storage_dir) / STAGING_FOLDER)


def remove_staging_leftovers(storage_dir: str | Path) -> list[str]:
    """Remove the staging folders of steps that are gone (killed mid-run); returns their names."""
    return remove_writer_leftovers(Path(storage_dir) / STAGING_FOLDER)


def writer_folder(root: Path, prefix: str = "") -> Path:
    """A new private folder in ``root`` named after its writer (``<prefix><host>--<pid>--<random>``)
    so that a later run can tell a killed writer's leftover from a live one (see
    :func:`remove_writer_leftovers`)."""
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=root, prefix=f"{prefix}{_host()}--{os.getpid()}--"))


@contextlib.contextmanager
def scratch_folder(root: Path, prefix: str) -> Iterator[Path]:
    """A private folder in ``root`` for the block's work, removed after it, and the folders
    writers killed in such a block left removed before it (see :func:`writer_folder`)."""
    remove_writer_leftovers(root, prefix)
    folder = writer_folder(root, prefix)
    try:
        yield folder
    finally:
        remove_path(folder)


def remove_writer_leftovers(root: Path, prefix: str = "") -> list[str]:
    """Remove the folders in ``root`` named ``<prefix>...`` whose writer is gone; their names.

    A folder of this host whose process no longer exists is a leftover; one of another host (a
    storage folder shared between machines), or without a writer in its name (made by an older
    version), only once nothing in it changed for ``STAGING_STALE_SECONDS``. A live writer's
    folder is never touched (a reused pid keeps a leftover longer, never removes a live one)."""
    removed = []
    for folder in sorted(root.glob(f"{glob.escape(prefix)}*")) if root.is_dir() else []:
        host, _, rest = folder.name.removeprefix(prefix).partition("--")
        pid = rest.partition("--")[0]
        if host == _host() and pid.isdigit():
            gone = not _alive(int(pid))
        else:
            gone = _idle_seconds(folder) > STAGING_STALE_SECONDS
        if gone and folder.is_dir():
            remove_path(folder)
            removed.append(folder.name)
    return removed


def _host() -> str:
    return os.uname().nodename.replace("--", "-") or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _idle_seconds(folder: Path) -> float:
    """Seconds since anything in ``folder`` (itself included) last changed."""
    latest = 0.0
    with contextlib.suppress(FileNotFoundError):
        latest = folder.lstat().st_mtime
        for path in folder.rglob("*"):
            with contextlib.suppress(FileNotFoundError):
                latest = max(latest, path.lstat().st_mtime)
    return time.time() - latest


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

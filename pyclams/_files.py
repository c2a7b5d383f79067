"""Writing files so that a failure never loses the user's data.

Every file pyclams writes goes to a temporary name beside its target and is renamed over the
target only when complete: a full disk, a file-size limit or a kill leaves the previous file
(possibly the input itself) intact and no partial output behind. Files get the permissions of
the user's umask, like any file the user creates.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import PyClamsInputError

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None


def os_error_text(err: BaseException, limit: int = 200) -> str:
    """The reason of an I/O error on one short line (h5py's messages span several)."""
    text = " ".join(str(getattr(err, "strerror", None) or err).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` with the process's umask applied."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def check_room(target: str | os.PathLike, n_bytes: int) -> None:
    """Error (naming ``target``) when a file of ``n_bytes`` cannot be written there: more
    than the process's file-size limit or the free space of its disk.

    Checked before writing formats (HDF5) whose library is left in a broken state when a write
    fails half-way. Nothing is created.
    """
    out = Path(target)
    mb = n_bytes / 2**20
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0] if resource else -1
    if limit not in (-1, getattr(resource, "RLIM_INFINITY", -1)) and n_bytes > limit:
        raise PyClamsInputError(f"cannot write {out}: it needs about {mb:.1f} MB and the "
                                f"file-size limit is {limit / 2**20:.1f} MB; nothing was written")
    try:
        free = shutil.disk_usage(out.parent if str(out.parent) else ".").free
    except OSError:
        return  # a missing folder is reported when the file is written
    if n_bytes > free:
        raise PyClamsInputError(f"cannot write {out}: it needs about {mb:.1f} MB and its disk "
                                f"has {free / 2**20:.1f} MB free; nothing was written")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """A temporary path beside ``target``; renamed to ``target`` when the block succeeds.

    An :class:`OSError` (no space, no permission, a read-only place) becomes a
    :class:`~pyclams.errors.PyClamsInputError` naming the target; the temporary file is removed.
    """
    out = Path(target)
    if out.is_dir():
        raise PyClamsInputError(f"{out} is a directory; give a file name")
    if out.exists() and not overwrite:
        raise PyClamsInputError(f"{out} exists; pass overwrite to replace it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=f".tmp{out.suffix}",
                                    dir=out.parent)
        os.close(fd)
    except OSError as err:
        raise PyClamsInputError(f"cannot write {out}: {os_error_text(err)}") from None
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, umask_mode())
        os.replace(tmp, out)
    except OSError as err:
        raise PyClamsInputError(f"cannot write {out}: {os_error_text(err)}; nothing was "
                                "written") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()

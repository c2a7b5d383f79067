"""Writing files so that a failure never loses the user's data.

Every file pyclams writes goes to a temporary name beside its target and is renamed over the
target only when complete: a full disk, a file-size limit or a kill leaves the previous file
(possibly the input itself) intact and no partial output behind. Files get the permissions of
the user's umask, like any file the user creates.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import PyClamsInputError


def os_error_text(err: BaseException, limit: int = 200) -> str:
    """The reason of an I/O error on one short line (h5py's messages span several)."""
    text = " ".join(str(getattr(err, "strerror", None) or err).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` with the process's umask applied."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


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

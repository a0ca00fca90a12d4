"""Writing outputs safely: never over an existing file without force, never a partial file; and
the names outputs take by default."""
from __future__ import annotations

import ctypes
import errno
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .errors import OutputError, RNNCodecError


@contextmanager
def reading(path: str | Path, error: type[RNNCodecError]) -> Iterator[None]:
    """Turn the OS's ways of failing to open `path` into one-line project errors."""
    try:
        yield
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory") from None
    except PermissionError:
        raise error(f"{path}: permission denied") from None


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold the stop signals for a few steps that must not be cut apart (a temporary file made and
    its cleanup armed; a file published and its temporary name removed); they arrive after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals go to the main thread only: nothing to hold here
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (other threads may be
    creating files), else by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish_new(tmp: str, path: Path) -> None:
    """Give the finished temporary file its name only if no file holds that name, in one step
    (a link, else renameat2's RENAME_NOREPLACE), so that a file that appeared meanwhile stays."""
    try:
        os.link(tmp, path, follow_symlinks=False)
        return
    except FileExistsError:
        raise OutputError(f"{path} exists (use --force to overwrite)") from None
    except OSError as exc:  # a file system without hard links
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise OutputError(f"cannot write {path}: its file system cannot create a file without a race")
    at_fdcwd, rename_noreplace = -100, 1
    if renameat2(at_fdcwd, os.fsencode(tmp), at_fdcwd, os.fsencode(path), rename_noreplace) != 0:
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise OutputError(f"{path} exists (use --force to overwrite)")
        raise OSError(err, os.strerror(err))


def check_output(path: str | Path, force: bool) -> None:
    """Refuse an output before any work is done: an existing file without `force`, a folder, a
    special file other than a character device or FIFO (written through), or a missing folder."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise OutputError(f"cannot write {path}: no such directory") from None
        return
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{path} is a directory")
    if not force:
        raise OutputError(f"{path} exists (use --force to overwrite)")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        raise OutputError(f"cannot write {path}: not a regular file, character device or FIFO")


def _temporary(path: Path) -> tuple[int, str]:
    """A new temporary file beside `path` (descriptor, name); failures as OutputError."""
    try:
        return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except FileNotFoundError:
        raise OutputError(f"cannot write {path}: no such directory") from None
    except PermissionError:
        raise OutputError(f"cannot write {path}: permission denied") from None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], force: bool = False) -> None:
    """Write through `write` into a temporary file beside `path`, then give it that name: never a
    partial file, even when a signal stops the process. Without `force` an existing file is never
    replaced, not even one that appears while writing. A new file gets the mode the umask gives;
    a replaced one keeps its mode. A character device or FIFO (/dev/null, a pipe) is written
    through, never renamed over."""
    path = Path(path)
    check_output(path, force)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):  # check_output let only a device or FIFO through
        try:
            with open(path, "wb") as f:
                write(f)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        return
    mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()
    tmp = None
    try:
        with signals_held():  # a stop held here arrives as this block ends: inside the try, tmp named
            fd, tmp = _temporary(path)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        with signals_held():
            if force:
                os.replace(tmp, path)
            else:
                try:
                    _publish_new(tmp, path)
                finally:
                    os.unlink(tmp)
    except BaseException as exc:
        if tmp is not None:
            with signals_held():
                Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def output_name(path: Path) -> Path:
    """Where `path` compresses to by default: its whole name plus .rnc, so that hopper.png and
    hopper.jpg never collide (hopper.png.rnc, hopper.jpg.rnc); a folder: its name plus .rnc."""
    return path.with_name(path.name + ".rnc")


def decoded_name(path: Path) -> Path:
    """Where `decompress path` writes by default: the name without .rnc, as PNG (photo.rnc and
    photo.png.rnc: photo.png; photo.jpg.rnc: photo.jpg.png, never a second lossy JPEG)."""
    name = path.name[: -len(".rnc")] if path.name.lower().endswith(".rnc") else path.name
    return path.with_name(name if name.lower().endswith(".png") else name + ".png")

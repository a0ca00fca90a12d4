"""Writing outputs safely: never over an existing file without force, never a partial file; and
the names outputs take by default."""
from __future__ import annotations

import os
import tempfile
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


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], force: bool = False) -> None:
    """Write through `write` into a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputError(f"{path} exists (use --force to overwrite)")
    if path.is_dir():
        raise OutputError(f"{path} is a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent if str(path.parent) else ".")
    except FileNotFoundError:
        raise OutputError(f"cannot write {path}: no such directory") from None
    except PermissionError:
        raise OutputError(f"cannot write {path}: permission denied") from None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
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

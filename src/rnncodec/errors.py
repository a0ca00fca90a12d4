"""The project's errors and notes: each carries a one-line message fit to show a user.

Library code raises these and gives notes through `warnings` (category `Note`); only the CLI
turns them into messages on stderr and exit codes.
"""


class RNNCodecError(Exception):
    """Base of every error rnncodec reports to users."""


class FormatError(RNNCodecError):
    """A .rnc stream is corrupt, truncated or not an .rnc stream at all."""


class Truncated(FormatError):
    """A .rnc stream ends inside a chunk: its complete chunks before it still decode."""


class ModelError(RNNCodecError):
    """Weights are missing, unreadable or not the model a stream needs."""


class ImageError(RNNCodecError):
    """An input image cannot be read or is of a kind rnncodec refuses."""


class OutputError(RNNCodecError):
    """An output file cannot be written (exists, permission, disk full)."""


class OptionError(RNNCodecError, ValueError):
    """An option has a value that cannot work (a rate of zero, more iterations than the model has);
    a ValueError too, as Python code that passes a bad value expects."""


class BudgetError(OptionError):
    """A rate budget below what one iteration of the image costs (`cost`, in bpp)."""

    def __init__(self, message: str, cost: float) -> None:
        super().__init__(message)
        self.cost = cost


class ResourceError(RNNCodecError):
    """The work needs more memory than the machine gives (an allocation failed)."""


class BatchError(RNNCodecError):
    """Some files of a folder failed (each was reported on its own line)."""


class Note(UserWarning):
    """Something a user may want to know that is no error (a 16-bit image coded in 8 bits)."""


class Stopped(BaseException):
    """A signal (SIGINT, SIGTERM, SIGHUP) asked the process to stop. A BaseException, as
    KeyboardInterrupt is, so that no `except Exception` swallows it and every cleanup on the way
    out (a temporary output file, worker processes) still runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

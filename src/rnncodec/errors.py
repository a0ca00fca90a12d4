"""The project's errors: each carries a one-line message fit to show a user."""


class RNNCodecError(Exception):
    """Base of every error rnncodec reports to users."""


class FormatError(RNNCodecError):
    """A .rnc stream is corrupt, truncated or not an .rnc stream at all."""


class ModelError(RNNCodecError):
    """Weights are missing, unreadable or not the model a stream needs."""


class ImageError(RNNCodecError):
    """An input image cannot be read or is of a kind rnncodec refuses."""


class OutputError(RNNCodecError):
    """An output file cannot be written (exists, permission, disk full)."""

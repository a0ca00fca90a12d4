"""rnncodec: lossy image compression with recurrent neural networks (Toderici et al., CVPR 2017).

    data = rnncodec.compress("photo.png", iterations=4)   # .rnc bytes, 0.5 bpp before entropy coding
    data = rnncodec.compress("photo.png", target_ms_ssim=0.95)  # the fewest bits that reach it
    data = rnncodec.compress("photo.png", rnncodec.Rate(quality=50))  # the rate options as one value
    image = rnncodec.decompress(data, iterations=2)         # any prefix decodes, at lower quality
    for image in rnncodec.decompress_progressive(response): # bytes as they arrive: an image per iteration
        ...

Importing the package registers the Pillow plugin (`Image.open("photo.rnc")`) and nothing heavier:
the codec (and ONNX Runtime) loads when `compress` or `decompress` is first used; torch never, unless
the torch engine is named.
"""
from . import pillow_plugin  # noqa: F401  (registers .rnc with Pillow)
from .errors import FormatError, ImageError, ModelError, RNNCodecError
from .rate import Rate

__all__ = ["compress", "decompress", "decompress_progressive", "Rate", "RNNCodecError", "FormatError", "ImageError", "ModelError"]
__version__ = "0.2.0"


def __getattr__(name: str):
    """`compress`, `decompress` and `decompress_progressive`, imported from the codec on first use."""
    if name in ("compress", "decompress", "decompress_progressive"):
        from . import codec

        return getattr(codec, name)
    raise AttributeError(f"module 'rnncodec' has no attribute {name!r}")

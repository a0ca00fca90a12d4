"""rnncodec: lossy image compression with recurrent neural networks (Toderici et al., CVPR 2017).

    data = rnncodec.compress("photo.png", iterations=4)   # .rnc bytes, 0.5 bpp before entropy coding
    data = rnncodec.compress("photo.png", target_ms_ssim=0.95)  # the fewest iterations that reach it
    image = rnncodec.decompress(data, iterations=2)         # any prefix decodes, at lower quality
"""
from .codec import compress, decompress
from .errors import FormatError, ImageError, ModelError, RNNCodecError

__all__ = ["compress", "decompress", "RNNCodecError", "FormatError", "ImageError", "ModelError"]
__version__ = "0.1.0"

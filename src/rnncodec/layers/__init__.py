"""Building blocks: convolutional recurrent cells, the binarizer, and a thread-count-stable conv."""
from .binarizer import Binarizer
from .cells import make_cell
from .conv import Conv2d

__all__ = ["Binarizer", "Conv2d", "make_cell"]

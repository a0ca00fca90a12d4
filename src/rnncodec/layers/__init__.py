"""Building blocks: convolutional recurrent cells and the binarizer."""
from .binarizer import Binarizer
from .cells import make_cell

__all__ = ["Binarizer", "make_cell"]

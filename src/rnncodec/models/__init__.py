"""The RNN image codec model."""
from .rnn_codec import RNNCodec

__all__ = ["RNNCodec"]

"""The torch networks: the RNN image codec, and the float context model of the legacy coder 1
(context_model.py, which the package does not import: coder 1 loads it when it needs it)."""
from .rnn_codec import RNNCodec

__all__ = ["RNNCodec"]

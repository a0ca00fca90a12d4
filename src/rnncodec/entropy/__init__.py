"""Payload coders: how one iteration's bits of one tile become bytes, and back.

A coder is chosen by the id in the .rnc header; the registry (base.py) says how to build it from
the stored weights of its context model, which zoo.py finds. A session codes one tile's
iterations in order, so a coder may use the earlier iterations' bits as context (progressive
decoding stays intact: iteration t needs only chunks 1..t).
"""
from . import arithmetic, integer  # noqa: F401  (register coders 1 and 2)
from .base import NO_MODEL, BitCoder, CoderSession, CoderSpec, coder_spec, explain_failure, register_coder
from .context import ContextCoder
from .raw import RawCoder

__all__ = ["NO_MODEL", "BitCoder", "CoderSession", "CoderSpec", "ContextCoder", "RawCoder", "coder_spec", "explain_failure",
           "register_coder"]

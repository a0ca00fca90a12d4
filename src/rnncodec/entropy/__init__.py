"""Payload coders: how one iteration's bits of one tile become bytes, and back.

A coder is chosen by the id in the .rnc header. A session codes one tile's iterations in order,
so a coder may use the earlier iterations' bits as context (progressive decoding stays intact:
iteration t needs only chunks 1..t).
"""
from .arithmetic import ContextCoder, arithmetic_coder
from .base import BitCoder, CoderSession, explain_failure, get_coder, register_coder
from .integer import integer_coder
from .raw import RawCoder

__all__ = ["BitCoder", "CoderSession", "ContextCoder", "RawCoder", "arithmetic_coder", "explain_failure", "get_coder",
           "integer_coder", "register_coder"]

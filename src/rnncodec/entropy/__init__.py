"""Payload coders: how one iteration's bits of one tile become bytes, and back.

A coder is chosen by the id in the .rnc header. A session codes one tile's iterations in order,
so a coder may use the earlier iterations' bits as context (progressive decoding stays intact:
iteration t needs only chunks 1..t).
"""
from .arithmetic import ArithmeticCoder, arithmetic_coder
from .base import BitCoder, CoderSession, get_coder, register_coder
from .raw import RawCoder

__all__ = ["ArithmeticCoder", "BitCoder", "CoderSession", "RawCoder", "arithmetic_coder", "get_coder", "register_coder"]

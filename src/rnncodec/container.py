"""The .rnc container (docs/FORMAT.md): a header, then one framed chunk per iteration.

A file cut at a chunk boundary is a valid file with fewer iterations. Each chunk carries a CRC32
of the bits it decodes to, so corruption and any encoder/decoder desync surface as FormatError.
Optional header sections (an ICC profile, a lossless alpha plane, the block iteration counts of
spatially adaptive bit rates, the size to show an image coded at reduced size) sit under the
header's CRC, so every prefix of a file keeps them.
"""
from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO

import numpy as np

from .errors import FormatError, Note, Truncated

MAGIC = b"RNC\x1a"
VERSION = 1  # files whose blocks all get every iteration, as every rnncodec reads them
VERSION_ADAPTIVE = 2  # chunks hold bits of active blocks only (FLAG_BLOCKS): older readers must refuse them
MAX_SIDE = 1 << 20  # a header claiming more is refused before anything is allocated
MAX_ITERATIONS = 64
MAX_TILE_SPAN = 4096  # tile + 2·overlap: the side of the largest region the image model codes at once
BITS_PER_BLOCK = 32  # bits per 16×16 block and iteration of every image model
MAX_ICC = 1 << 24  # bytes of an ICC profile (real ones are kilobytes, rarely a megabyte)
FLAG_ICC = 1
FLAG_ALPHA = 2
FLAG_BLOCKS = 4
FLAG_DISPLAY = 8
# the optional sections, in file order
_SECTIONS = ((FLAG_ICC, "icc_profile"), (FLAG_ALPHA, "alpha"), (FLAG_BLOCKS, "blocks"), (FLAG_DISPLAY, "display"))
_DISPLAY = struct.Struct(">II")  # the width and height an image coded at reduced size is shown at
MAX_UPSCALE = 8  # a display size more than this many times the coded one is refused
_FIXED = struct.Struct(">4sBBBB8s8sIIHHB")  # magic ver coder flags precision model entropy w h tile overlap iters
# the encoder's engine and arithmetic, in the byte older files left 0: torch's fp32 or bf16, or ONNX Runtime's fp32
PRECISION_BYTES = {None: 0, "fp32": 1, "bf16": 2, "onnx-fp32": 3}
_PRECISION_OF_BYTE = {v: k for k, v in PRECISION_BYTES.items()}
_CHUNK = struct.Struct(">II")  # payload length, CRC32 of the decoded bits
CHUNK_OVERHEAD = _CHUNK.size


@dataclass(frozen=True)
class Header:
    coder_id: int
    model_id: bytes
    entropy_id: bytes
    width: int
    height: int
    tile: int
    overlap: int
    iterations: int
    icc_profile: bytes | None = None
    alpha: bytes | None = None  # the alpha plane as `pack_alpha` stores it; None: opaque
    blocks: bytes | None = None  # iterations per 16×16 block as `pack_blocks` stores them; None: all
    precision: str | None = None  # the encoder's engine and arithmetic (PRECISION_BYTES); None: not recorded
    display: bytes | None = None  # the size the image is shown at, as `pack_display` stores it; None: as coded

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) of the decoded image: the coded size, or larger for an image coded at
        reduced size (the decoder upscales it). The alpha plane, if any, is of this size."""
        return _DISPLAY.unpack(self.display) if self.display else (self.width, self.height)

    def to_bytes(self) -> bytes:
        sections = [(flag, getattr(self, name)) for flag, name in _SECTIONS if getattr(self, name)]
        version = VERSION_ADAPTIVE if self.blocks else VERSION
        out = _FIXED.pack(MAGIC, version, self.coder_id, sum(flag for flag, _ in sections), PRECISION_BYTES[self.precision],
                          self.model_id, self.entropy_id, self.width, self.height, self.tile, self.overlap, self.iterations)
        out += b"".join(struct.pack(">I", len(data)) + data for _, data in sections)
        return out + struct.pack(">I", zlib.crc32(out))


def bits_crc(index: int, crc: int = 0) -> int:
    """Start value of an iteration's CRC: the chunk index, so chunks cannot be swapped unnoticed."""
    return zlib.crc32(bytes([index]), crc)


def write(header: Header, chunks: list[tuple[bytes, int]]) -> bytes:
    """Serialise a header and (payload, bits CRC) chunks."""
    parts = [header.to_bytes()]
    for payload, crc in chunks:
        parts += [_CHUNK.pack(len(payload), crc), payload]
    return b"".join(parts)


def prefix_sizes(header: Header, chunks: list[tuple[bytes, int]]) -> list[int]:
    """Bytes of the file cut after each chunk, header included: what `--iterations k` writes for
    k = 1, 2, … (the header's size does not depend on its iteration count)."""
    sizes, size = [], len(header.to_bytes())
    for payload, _ in chunks:
        size += CHUNK_OVERHEAD + len(payload)
        sizes.append(size)
    return sizes


def estimated_size(header: Header, segments: list[list[bytes]], counts: list[np.ndarray]) -> float:
    """The bytes of the file whose tiles' blocks get `counts` iterations, estimated from a pass
    that coded every block (`segments[t][i]`: tile i's at iteration t) before it is coded: the
    framing exactly, each segment at the share of its tile's blocks still coded then."""
    empty = (join_segments([b""] * len(counts)), 0)
    framing = prefix_sizes(replace(header, blocks=pack_blocks(counts)), [empty] * max(int(c.max()) for c in counts))[-1]
    return framing + sum(len(coded[i]) * np.mean(c > t)
                         for i, c in enumerate(counts) for t, coded in enumerate(segments[: int(c.max())]))


def truncate(header: Header, chunks: list[tuple[bytes, int]], iterations: int) -> bytes:
    """The file of the first `iterations` chunks, its header saying so: a valid file of its own."""
    return write(replace(header, iterations=iterations), chunks[:iterations])


class Chunks:
    """The chunks an encoder codes, tile by tile in raster order: each iteration's tile segments,
    and the CRC of its bits so far."""

    def __init__(self, iterations: int) -> None:
        self.segments: list[list[bytes]] = [[] for _ in range(iterations)]
        self.crcs = [bits_crc(t) for t in range(iterations)]

    def add(self, t: int, segment: bytes, bits: np.ndarray) -> None:
        """Iteration t's segment of the next tile, and the bits (uint8 0/1) it codes."""
        self.segments[t].append(segment)
        self.crcs[t] = bits_crc_update(bits, self.crcs[t])

    def file(self, header: Header, iterations: int) -> bytes:
        """The file of the first `iterations` chunks."""
        return truncate(header, [(join_segments(s), c) for s, c in zip(self.segments[:iterations], self.crcs)], iterations)


_PIECE = 1 << 20  # what a stream is read in: a length a file announces but does not hold costs no memory


def _read(f: BinaryIO, n: int, what: str, error: type[FormatError] = FormatError) -> bytes:
    """Exactly n bytes of `f`, read a piece at a time; fewer is an `error` naming `what`."""
    parts, left = [], n
    while left:
        part = f.read(min(left, _PIECE))
        if not part:
            raise error(what)
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def read(source: bytes | BinaryIO, max_pixels: int | None = None,
         strict: bool = True) -> tuple[Header, list[tuple[bytes, int]]]:
    """Parse a stream (bytes, or a binary file read from its position): the fixed header first,
    then only what the header and each chunk's length announce, each length checked against
    what a valid file can hold before it is read, so a hostile or endless input costs no more
    than the bytes a valid one of its size would. An image of more than `max_pixels` (at its
    display size) is refused before its chunks are read. Every complete chunk is returned; a
    stream that ends inside a chunk is an error if `strict`, and otherwise a note, its complete
    chunks being a valid file (one that ends inside its header or first chunk is always an error)."""
    f = as_stream(source)
    header, chunks = read_header(f, max_pixels), []
    try:
        for chunk in read_chunks(f, header):
            chunks.append(chunk)
    except Truncated as exc:
        if strict or not chunks:
            raise
        note_cut(exc, len(chunks))
    return header, chunks


def note_cut(exc: Truncated, complete: int) -> None:
    """The note a lenient reader gives for a stream cut inside a chunk."""
    warnings.warn(f"{exc}: the {complete} complete iteration(s) before it decode", Note, stacklevel=3)


def as_stream(source: bytes | BinaryIO) -> BinaryIO:
    """Bytes as a stream; a stream as it is."""
    return io.BytesIO(source) if isinstance(source, bytes | bytearray | memoryview) else source


def read_header(f: BinaryIO, max_pixels: int | None = None) -> Header:
    """The header at `f`'s position, checked as `read` checks it."""
    magic = f.read(len(MAGIC))
    if magic != MAGIC:
        raise FormatError("not an .rnc file (bad magic)")
    head = magic + _read(f, _FIXED.size - len(MAGIC), "truncated header")
    _, version, coder, flags, precision, model_id, entropy_id, w, h, tile, overlap, iters = _FIXED.unpack(head)
    if version not in (VERSION, VERSION_ADAPTIVE):
        raise FormatError(f"unsupported .rnc format version {version} (this rnncodec reads {VERSION} and "
                          f"{VERSION_ADAPTIVE})")
    if flags & ~(FLAG_ICC | FLAG_ALPHA | FLAG_BLOCKS | FLAG_DISPLAY):
        raise FormatError(f"unknown header flags {flags:#04x}: the file needs a newer rnncodec, or is corrupt")
    if bool(flags & FLAG_BLOCKS) != (version == VERSION_ADAPTIVE):
        raise FormatError("corrupt header: block iteration counts and format version disagree")
    if max_pixels is not None and w * h > max_pixels:  # a display size is no smaller: refused before it is read
        raise FormatError(f"the file claims {w}×{h} pixels, over the cap of {max_pixels}")
    sections = {}
    for flag, name in _SECTIONS:
        if flags & flag:
            length = _read(f, 4, "truncated header")
            n = struct.unpack(">I", length)[0]
            if n > _section_bound(name, w, h, tile, overlap, max_pixels):  # refused before it is read
                raise FormatError(f"corrupt header: its {name} section claims {n} bytes")
            sections[name] = _read(f, n, "truncated header")
            head += length + sections[name]
    (crc,) = struct.unpack(">I", _read(f, 4, "truncated header"))
    if zlib.crc32(head) != crc:
        raise FormatError("header CRC mismatch: the file is corrupt")
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise FormatError(f"invalid image size {w}×{h}")
    if not 1 <= iters <= MAX_ITERATIONS or tile % 16 or tile == 0 or overlap % 16 or overlap >= tile:
        raise FormatError("invalid header fields (iterations, tile or overlap)")
    if tile + 2 * overlap > MAX_TILE_SPAN:
        raise FormatError(f"invalid header: tiles of {tile} px with {overlap} px overlaps exceed {MAX_TILE_SPAN} px")
    written = _PRECISION_OF_BYTE.get(precision)  # a value it does not know: not recorded
    header = Header(coder, model_id, entropy_id, w, h, tile, overlap, iters, **sections, precision=written)
    if "display" in sections:
        _check_display(header)
    width, height = header.display_size
    if max_pixels is not None and width * height > max_pixels:
        raise FormatError(f"the file claims {width}×{height} pixels, over the cap of {max_pixels}")
    return header


def read_chunks(f: BinaryIO, header: Header) -> Iterator[tuple[bytes, int]]:
    """Each chunk after the header, as soon as it is complete: its payload and bits CRC. A stream
    that ends inside one raises Truncated, after the complete ones."""
    largest = _chunk_bound(header)
    for index in range(1, header.iterations + 2):
        frame = f.read(_CHUNK.size)
        if not frame:
            return
        if index > header.iterations:
            raise FormatError("trailing data after the last chunk")
        what = f"the stream ends inside iteration {index}"
        n, crc = _CHUNK.unpack(frame + _read(f, _CHUNK.size - len(frame), what, Truncated))
        if n > largest:  # refused before it is read
            raise FormatError(f"corrupt chunk {index}: {n} bytes, more than its tiles' bits can take")
        yield _read(f, n, what, Truncated), crc


def _deflate_bound(n: int) -> int:
    """The most bytes zlib's deflate makes of n bytes (its compressBound)."""
    return n + (n >> 12) + (n >> 14) + (n >> 25) + 13


def _grids(width: int, height: int, tile: int, overlap: int) -> tuple[int, int, int]:
    """An upper bound on a coded image's tiles and on each tile's 16×16 block grid (rows,
    columns), from the header alone (tiles.plan_tiles cuts no tile larger)."""
    width, height, tile = max(width, 1), max(height, 1), max(tile, 16)  # not yet checked: any values
    ny, nx = -(-height // tile), -(-width // tile)
    return ny * nx, -(-(-(-height // ny) + 16 + 2 * overlap) // 16), -(-(-(-width // nx) + 16 + 2 * overlap) // 16)


def _section_bound(name: str, width: int, height: int, tile: int, overlap: int, max_pixels: int | None) -> int:
    """The most bytes a valid section can hold (the display size is not yet known: at most
    MAX_UPSCALE times the coded size in each side, and `max_pixels`)."""
    if name == "icc_profile":
        return MAX_ICC
    if name == "display":
        return _DISPLAY.size
    if name == "alpha":
        shown = min(MAX_UPSCALE * width, MAX_SIDE) * min(MAX_UPSCALE * height, MAX_SIDE)
        return _deflate_bound(shown if max_pixels is None else min(shown, max_pixels))
    tiles, gh, gw = _grids(width, height, tile, overlap)
    return _deflate_bound(tiles * gh * gw)


def _chunk_bound(header: Header) -> int:
    """The most bytes a valid chunk can hold: every bit of every tile at the range coder's worst,
    16 bits per bit (its probabilities' grid), its constant of up to 96 bits, and a length varint
    per segment."""
    tiles, gh, gw = _grids(header.width, header.height, header.tile, header.overlap)
    return tiles * (BITS_PER_BLOCK * gh * gw * 2 + 12 + 5)


def size(header: Header, chunks: list[tuple[bytes, int]]) -> int:
    """Bytes of the stream `read` parsed into these."""
    return prefix_sizes(header, chunks)[-1] if chunks else len(header.to_bytes())


def join_segments(segments: list[bytes]) -> bytes:
    """A chunk payload: each tile's segment prefixed by its length as a LEB128 varint."""
    out = bytearray()
    for seg in segments:
        n = len(seg)
        while n >= 0x80:
            out.append(n & 0x7F | 0x80)
            n >>= 7
        out.append(n)
        out += seg
    return bytes(out)


def split_segments(payload: bytes, count: int) -> list[bytes]:
    """Inverse of join_segments; any inconsistency is a FormatError."""
    segments, pos = [], 0
    for _ in range(count):
        n, shift = 0, 0
        while True:
            if pos >= len(payload) or shift > 35:
                raise FormatError("corrupt chunk: bad tile segment length")
            byte = payload[pos]
            pos += 1
            n |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if pos + n > len(payload):
            raise FormatError("corrupt chunk: tile segment runs past the chunk")
        segments.append(payload[pos : pos + n])
        pos += n
    if pos != len(payload):
        raise FormatError("corrupt chunk: extra bytes after the last tile segment")
    return segments


def bits_crc_update(bits: np.ndarray, crc: int) -> int:
    """Fold one tile's bits (a uint8 0/1 array) into an iteration's CRC, in tile order."""
    return zlib.crc32(np.packbits(bits.reshape(-1)).tobytes(), crc)


def pack_alpha(plane: np.ndarray) -> bytes:
    """An H×W uint8 alpha plane, lossless: each row as differences from the left neighbour
    (mod 256, PNG's Sub filter: flat runs become zeros, ramps constants), deflated by zlib."""
    return zlib.compress(np.diff(plane, axis=1, prepend=np.uint8(0)).tobytes(), 9)


def pack_display(width: int, height: int) -> bytes:
    """The display size section of an image coded at reduced size."""
    return _DISPLAY.pack(width, height)


def _check_display(header: Header) -> None:
    """A display size is at least the coded size and at most MAX_UPSCALE times it, in each side."""
    if len(header.display) != _DISPLAY.size:
        raise FormatError("corrupt display size")
    for shown, coded in zip(header.display_size, (header.width, header.height)):
        if not coded <= shown <= min(MAX_SIDE, MAX_UPSCALE * coded):
            raise FormatError(f"invalid display size {header.display_size[0]}×{header.display_size[1]} for an image "
                              f"coded at {header.width}×{header.height}")


def alpha_plane(header: Header) -> np.ndarray | None:
    """The header's alpha plane (H×W uint8 at the display size), or None for an opaque image;
    never inflates more than the H×W bytes the header allows (a zip bomb stops there)."""
    if header.alpha is None:
        return None
    width, height = header.display_size
    size = width * height
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(header.alpha, size)
        extra = inflate.decompress(inflate.unconsumed_tail, 1)  # only the stream's end may follow
        complete = inflate.eof and not extra and not inflate.unused_data
    except zlib.error:
        complete = False
    if not complete or len(raw) != size:
        raise FormatError("corrupt alpha plane")
    return np.cumsum(np.frombuffer(raw, np.uint8).reshape(height, width), axis=1, dtype=np.uint8)


def pack_blocks(counts: list[np.ndarray]) -> bytes:
    """How many iterations each 16×16 block of each tile receives (one h×w uint8 grid per tile, in
    tile order), deflated: the counts are small and smooth, so they cost little."""
    return zlib.compress(b"".join(c.astype(np.uint8).tobytes() for c in counts), 9)


def block_counts(header: Header, grids: list[tuple[int, int]]) -> list[np.ndarray] | None:
    """The header's block iteration counts, one grid per tile of the given block sizes, or None
    when every block gets every iteration; never inflates more than the grids hold."""
    if header.blocks is None:
        return None
    size = sum(h * w for h, w in grids)
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(header.blocks, size)
        complete = inflate.eof and not inflate.unused_data and not inflate.unconsumed_tail
    except zlib.error:
        complete = False
    counts = np.frombuffer(raw, np.uint8) if complete else np.zeros(0, np.uint8)
    if len(counts) != size or counts.min(initial=1) < 1 or counts.max(initial=1) > MAX_ITERATIONS:
        raise FormatError("corrupt block iteration counts")
    offsets = np.cumsum([0] + [h * w for h, w in grids])
    return [counts[a:b].reshape(g) for a, b, g in zip(offsets, offsets[1:], grids)]

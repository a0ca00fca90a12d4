"""Writes the hostile corpus beside this script: small crafted .rnc files, each of which asks a
decoder for far more work or memory than its size, or lies about its own structure. Each is named
in tests/test_hostile.py with the outcome it must have. They name the packaged default model and
its integer context model, so that a decoder gets as far as it would with a real file.

    PYTHONPATH=src python tests/hostile/make.py
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

from rnncodec import container
from rnncodec.zoo import default_coder, load_image_model

HERE = Path(__file__).parent


def header(width: int, height: int, tile: int = 1024, overlap: int = 16, iterations: int = 4, **sections) -> bytes:
    model = load_image_model()
    coder = default_coder(model)
    return container.Header(coder.coder_id, model.model_id, coder.model_id, width, height, tile, overlap, iterations,
                            **sections).to_bytes()


def chunks(tiles: int, iterations: int, segment: bytes = b"") -> bytes:
    """`iterations` chunks of `tiles` equal segments each (bits CRCs that cannot match)."""
    payload = container.join_segments([segment] * tiles)
    return b"".join(struct.pack(">II", len(payload), 0) + payload for _ in range(iterations))


def raw_header(fields: bytes, sections: bytes = b"") -> bytes:
    """A header from its fixed fields' bytes, with a correct CRC, so that only its values lie."""
    body = fields + sections
    return body + struct.pack(">I", zlib.crc32(body))


def corpus() -> dict[str, bytes]:
    fixed = container._FIXED
    model = load_image_model()
    coder = default_coder(model)

    def fields(w: int, h: int, tile: int, overlap: int, iterations: int, flags: int = 0, version: int = 1) -> bytes:
        return fixed.pack(container.MAGIC, version, coder.coder_id, flags, 0, model.model_id, coder.model_id, w, h, tile,
                          overlap, iterations)

    return {
        # one tile of 65520 px (8192² claimed, under the default cap): a tile far past the format's bound
        "huge-tile.rnc": raw_header(fields(8192, 8192, 65520, 0, 1)) + chunks(1, 1),
        # empty coder-2 segments claiming 2048² at 4 iterations: the range decoder would invent every bit
        "empty-segments.rnc": header(2048, 2048) + chunks(4, 4),
        # segments of one word each: the decoder runs out of data in the first rows
        "short-segments.rnc": header(2048, 2048) + chunks(4, 4, b"\x5a\xa5\x5a\xa5"),
        # 8192² claimed (67 MP, under the default cap) with segments of junk
        "large-claim.rnc": header(8192, 8192, iterations=1) + chunks(64, 1, bytes(range(16))),
        # coded at 2048², shown at 16384² (268 MP): over the default pixel cap
        "display-bomb.rnc": header(2048, 2048, iterations=1, display=container.pack_display(16384, 16384)) + chunks(4, 1),
        # shown at 8× the coded size: at the format's bound on display size, under the default cap
        "display-8x.rnc": header(1024, 1024, iterations=1, display=container.pack_display(8192, 8192)) + chunks(1, 1),
        # an ICC section said to be 4 GiB long in a file of a few dozen bytes
        "section-length.rnc": raw_header(fields(64, 64, 64, 16, 1, flags=container.FLAG_ICC), struct.pack(">I", 2**32 - 1)),
        # a chunk said to be 4 GiB long
        "chunk-length.rnc": header(64, 64, 64, 16, 1) + struct.pack(">II", 2**32 - 1, 0) + b"\0" * 16,
        # more iterations than the format allows
        "iterations.rnc": raw_header(fields(64, 64, 64, 16, 255)),
        # an alpha plane that inflates far past the image (a zip bomb)
        "alpha-bomb.rnc": header(64, 64, 64, 16, 1, alpha=zlib.compress(bytes(1 << 20), 9)) + chunks(1, 1),
        # block counts (version 2) that inflate far past the block grids
        "blocks-bomb.rnc": raw_header(fields(64, 64, 64, 16, 1, flags=container.FLAG_BLOCKS, version=2),
                                      struct.pack(">I", len(z := zlib.compress(b"\x01" * (1 << 20), 9))) + z) + chunks(1, 1),
        # only the magic, then junk
        "magic-only.rnc": container.MAGIC + bytes(2000),
    }


def main() -> None:
    for name, data in corpus().items():
        (HERE / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()

// The .rnc container (docs/FORMAT.md), read from a stream as its bytes arrive: the header, then
// one framed chunk per iteration. Every length is checked against what a valid file can hold
// before it is read, as the Python reader (src/rnncodec/container.py) does.

export class FormatError extends Error {
  constructor(message) {
    super(message);
    this.name = "FormatError";
  }
}

const MAGIC = [0x52, 0x4e, 0x43, 0x1a];
const VERSION = 1;
const VERSION_ADAPTIVE = 2;
const MAX_SIDE = 1 << 20;
const MAX_ITERATIONS = 64;
const MAX_TILE_SPAN = 4096;
const BITS_PER_BLOCK = 32;
const MAX_ICC = 1 << 24;
const MAX_UPSCALE = 8;
const FLAGS = { icc: 1, alpha: 2, blocks: 4, display: 8 };
const FIXED = 37; // magic ver coder flags precision model(8) entropy(8) w h tile overlap iters
const PRECISIONS = { 1: "fp32", 2: "bf16", 3: "onnx-fp32" }; // the encoder's engine and arithmetic

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** zlib's crc32(bytes, crc): continues `crc` over `bytes`. */
export function crc32(bytes, crc = 0) {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** Start value of iteration t's bits CRC (t from 0): the chunk index comes first. */
export const bitsCrc = (t) => crc32(Uint8Array.of(t));

/** Fold one tile's 0/1 bits into an iteration's CRC, packed MSB first as numpy's packbits. */
export function bitsCrcUpdate(bits, crc) {
  const packed = new Uint8Array((bits.length + 7) >> 3);
  for (let i = 0; i < bits.length; i++) if (bits[i]) packed[i >> 3] |= 0x80 >> (i & 7);
  return crc32(packed, crc);
}

/** Reads exact byte counts from a ReadableStream as its chunks arrive. */
export class StreamReader {
  constructor(stream) {
    this.reader = stream.getReader();
    this.parts = [];
    this.buffered = 0;
    this.done = false;
    this.consumed = 0;
  }

  async fill(n) {
    while (this.buffered < n && !this.done) {
      const { value, done } = await this.reader.read();
      if (done) this.done = true;
      else if (value.length) {
        this.parts.push(value);
        this.buffered += value.length;
      }
    }
    return this.buffered >= n;
  }

  /** Exactly n bytes; fewer before the stream ends is a FormatError naming `what`. A length
   * that the stream does not hold costs no more memory than the bytes really there. */
  async read(n, what) {
    if (!(await this.fill(n))) throw new FormatError(what);
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const part = this.parts[0];
      const take = Math.min(part.length, n - at);
      out.set(part.subarray(0, take), at);
      at += take;
      if (take === part.length) this.parts.shift();
      else this.parts[0] = part.subarray(take);
    }
    this.buffered -= n;
    this.consumed += n;
    return out;
  }

  /** Whether the stream ends here. */
  async atEnd() {
    return !(await this.fill(1));
  }

  cancel() {
    this.reader.cancel().catch(() => {});
  }
}

const u32 = (b, at) => ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
const u16 = (b, at) => (b[at] << 8) | b[at + 1];
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const concat = (parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

/** The most bytes zlib's deflate makes of n bytes (its compressBound). */
const deflateBound = (n) => n + Math.floor(n / 4096) + Math.floor(n / 16384) + Math.floor(n / 33554432) + 13;

function grids(width, height, tile, overlap) {
  const ceil = (a, b) => Math.ceil(a / b);
  width = Math.max(width, 1);
  height = Math.max(height, 1);
  tile = Math.max(tile, 16);
  const ny = ceil(height, tile), nx = ceil(width, tile);
  return [ny * nx, ceil(ceil(height, ny) + 16 + 2 * overlap, 16), ceil(ceil(width, nx) + 16 + 2 * overlap, 16)];
}

function sectionBound(name, width, height, tile, overlap, maxPixels) {
  if (name === "icc") return MAX_ICC;
  if (name === "display") return 8;
  if (name === "alpha") {
    const shown = Math.min(MAX_UPSCALE * width, MAX_SIDE) * Math.min(MAX_UPSCALE * height, MAX_SIDE);
    return deflateBound(Math.min(shown, maxPixels));
  }
  const [tiles, gh, gw] = grids(width, height, tile, overlap);
  return deflateBound(tiles * gh * gw);
}

/** The header of an .rnc stream, read and checked as container.read does, before anything is
 * allocated for the image; `maxPixels` caps the decoded image (display size). */
export async function readHeader(reader, maxPixels) {
  const magic = await reader.read(4, "not an .rnc file (bad magic)").catch(() => null);
  if (!magic || MAGIC.some((m, i) => magic[i] !== m)) throw new FormatError("not an .rnc file (bad magic)");
  const rest = await reader.read(FIXED - 4, "truncated header");
  const head = [magic, rest];
  const f = concat(head);
  const version = f[4], coder = f[5], flags = f[6], precision = f[7];
  const width = u32(f, 24), height = u32(f, 28), tile = u16(f, 32), overlap = u16(f, 34), iterations = f[36];
  if (version !== VERSION && version !== VERSION_ADAPTIVE) {
    throw new FormatError(`unsupported .rnc format version ${version} (this decoder reads 1 and 2)`);
  }
  if (flags & ~15) throw new FormatError(`unknown header flags 0x${flags.toString(16).padStart(2, "0")}: the file needs a newer decoder, or is corrupt`);
  if (Boolean(flags & FLAGS.blocks) !== (version === VERSION_ADAPTIVE)) {
    throw new FormatError("corrupt header: block iteration counts and format version disagree");
  }
  if (width * height > maxPixels) throw new FormatError(`the file claims ${width}×${height} pixels, over the cap of ${maxPixels}`);
  const sections = {};
  for (const name of ["icc", "alpha", "blocks", "display"]) {
    if (!(flags & FLAGS[name])) continue;
    const length = await reader.read(4, "truncated header");
    const n = u32(length, 0);
    if (n > sectionBound(name, width, height, tile, overlap, maxPixels)) {
      throw new FormatError(`corrupt header: its ${name} section claims ${n} bytes`);
    }
    sections[name] = await reader.read(n, "truncated header");
    head.push(length, sections[name]);
  }
  const crc = u32(await reader.read(4, "truncated header"), 0);
  if (crc32(concat(head)) !== crc) throw new FormatError("header CRC mismatch: the file is corrupt");
  if (!(width >= 1 && width <= MAX_SIDE && height >= 1 && height <= MAX_SIDE)) {
    throw new FormatError(`invalid image size ${width}×${height}`);
  }
  if (iterations < 1 || iterations > MAX_ITERATIONS || tile % 16 || tile === 0 || overlap % 16 || overlap >= tile) {
    throw new FormatError("invalid header fields (iterations, tile or overlap)");
  }
  if (tile + 2 * overlap > MAX_TILE_SPAN) {
    throw new FormatError(`invalid header: tiles of ${tile} px with ${overlap} px overlaps exceed ${MAX_TILE_SPAN} px`);
  }
  let display = [width, height];
  if (sections.display) {
    if (sections.display.length !== 8) throw new FormatError("corrupt display size");
    display = [u32(sections.display, 0), u32(sections.display, 4)];
    for (const [shown, coded] of [[display[0], width], [display[1], height]]) {
      if (!(coded <= shown && shown <= Math.min(MAX_SIDE, MAX_UPSCALE * coded))) {
        throw new FormatError(`invalid display size ${display[0]}×${display[1]} for an image coded at ${width}×${height}`);
      }
    }
    if (display[0] * display[1] > maxPixels) {
      throw new FormatError(`the file claims ${display[0]}×${display[1]} pixels, over the cap of ${maxPixels}`);
    }
  }
  return {
    version, coderId: coder, precision: PRECISIONS[precision] ?? null,
    modelId: hex(f.subarray(8, 16)), entropyId: hex(f.subarray(16, 24)),
    width, height, tile, overlap, iterations, displaySize: display, ...sections,
  };
}

/** The most bytes a valid chunk can hold (container._chunk_bound). */
export function chunkBound(header) {
  const [tiles, gh, gw] = grids(header.width, header.height, header.tile, header.overlap);
  return tiles * (BITS_PER_BLOCK * gh * gw * 2 + 12 + 5);
}

/** The next chunk as { payload, crc }, null at the stream's end; a cut inside it is a FormatError. */
export async function readChunk(reader, header, index) {
  if (await reader.atEnd()) return null;
  if (index >= header.iterations) throw new FormatError("trailing data after the last chunk");
  const what = `truncated inside chunk ${index + 1}`;
  const frame = await reader.read(8, what);
  const n = u32(frame, 0);
  if (n > chunkBound(header)) throw new FormatError(`corrupt chunk ${index + 1}: ${n} bytes, more than its tiles' bits can take`);
  return { payload: await reader.read(n, what), crc: u32(frame, 4) };
}

/** A chunk payload's tile segments (LEB128 length, then the segment, per tile). */
export function splitSegments(payload, count) {
  const segments = [];
  let pos = 0;
  for (let i = 0; i < count; i++) {
    let n = 0, shift = 0;
    for (;;) {
      if (pos >= payload.length || shift > 35) throw new FormatError("corrupt chunk: bad tile segment length");
      const byte = payload[pos++];
      n += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if (byte < 0x80) break;
    }
    if (pos + n > payload.length) throw new FormatError("corrupt chunk: tile segment runs past the chunk");
    segments.push(payload.subarray(pos, pos + n));
    pos += n;
  }
  if (pos !== payload.length) throw new FormatError("corrupt chunk: extra bytes after the last tile segment");
  return segments;
}

/** Inflate a zlib stream to exactly `size` bytes through the browser's DecompressionStream;
 * a stream that is corrupt, ends early, goes on, or holds more is a FormatError `what`. Never
 * keeps more than `size` bytes (a zip bomb stops there). */
export async function inflateExactly(data, size, what) {
  const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate"));
  const reader = stream.getReader();
  const out = new Uint8Array(size);
  let at = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (at + value.length > size) throw new FormatError(what);
      out.set(value, at);
      at += value.length;
    }
  } catch (err) {
    reader.cancel().catch(() => {});
    throw err instanceof FormatError ? err : new FormatError(what);
  }
  if (at !== size) throw new FormatError(what);
  return out;
}

/** The header's alpha plane (display-sized, H×W bytes), or null for an opaque image. */
export async function alphaPlane(header) {
  if (!header.alpha) return null;
  const [width, height] = header.displaySize;
  const plane = await inflateExactly(header.alpha, width * height, "corrupt alpha plane");
  for (let y = 0; y < height; y++) { // undo PNG's Sub filter, modulo 256
    for (let x = 1, at = y * width + 1; x < width; x++, at++) plane[at] = (plane[at] + plane[at - 1]) & 0xff;
  }
  return plane;
}

/** The header's block iteration counts, one Uint8Array per tile of the given [rows, cols] grids,
 * or null when every block gets every iteration. */
export async function blockCounts(header, tileGrids) {
  if (!header.blocks) return null;
  const size = tileGrids.reduce((n, [h, w]) => n + h * w, 0);
  const counts = await inflateExactly(header.blocks, size, "corrupt block iteration counts");
  if (counts.some((c) => c < 1 || c > MAX_ITERATIONS)) throw new FormatError("corrupt block iteration counts");
  const out = [];
  let at = 0;
  for (const [h, w] of tileGrids) {
    out.push(counts.subarray(at, at + h * w));
    at += h * w;
  }
  return out;
}

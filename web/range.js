// The range decoder of constriction's queue RangeDecoder (32-bit words little-endian, a 64-bit
// state), with the Bernoulli model the Python coder uses (`Bernoulli(perfect=False)`: a
// two-symbol categorical at 24-bit precision, built by `from_floating_point_probabilities_fast`),
// bit for bit: src/rnncodec/entropy/range_coder.py. The 64-bit state is BigInt, reduced modulo
// 2^64 where the Rust wraps.
import { FormatError } from "./container.js";

const PRECISION = 24n;
const MASK64 = (1n << 64n) - 1n;
const FULL = MASK64; // the initial range, and an empty buffer's
const RENORM = 1n << 32n;
const MAX_DIFFERENCE = (1n << 33n) - 1n;
// Past its data the decoder reads zero words and so invents bits without end: a segment of n
// bytes carries at most 8n + 96 bits of information, and one whose bits carry more than this
// slack above 8n ran out of data (range_coder._SLACK_BITS).
const SLACK_BITS = 256;

/** cdf[1] of constriction's quantised [1 − p, p] for p = k / 2^16: floor((1 − p)(2^24 − 2)) + 1,
 * exact in float64 (a product of 16 and 24 significant bits). */
export const splitOf = (k) => Math.floor(((65536 - k) * 16777214) / 65536) + 1;

export class BitDecoder {
  constructor(data) {
    if (data.length % 4) throw new FormatError("corrupt chunk: arithmetic-coded segment is not a whole number of words");
    const view = new DataView(data.buffer, data.byteOffset, data.length);
    this.words = Array.from({ length: data.length / 4 }, (_, i) => BigInt(view.getUint32(4 * i, true)));
    this.pos = 0;
    this.lower = 0n;
    this.range = FULL;
    let point = 0n, read = 0;
    while (read < 2 && this.pos < this.words.length) {
      point = (point << 32n) | this.words[this.pos++];
      read++;
    }
    if (read === 1) point <<= 32n;
    this.point = point;
    this.room = 8 * data.length + SLACK_BITS;
  }

  /** The bits of P(1) = k[i] / 2^16, in order, into `out` (0/1). */
  decode(k, out) {
    for (let i = 0; i < k.length; i++) {
      const split = BigInt(splitOf(k[i]));
      const scale = this.range >> PRECISION;
      const quantile = ((this.point - this.lower) & MASK64) / scale;
      if (quantile >= 1n << PRECISION) throw new FormatError("corrupt chunk: invalid arithmetic-coded data");
      let bit;
      if (quantile < split) {
        bit = 0;
        this.range = scale * split;
      } else {
        bit = 1;
        this.lower = (this.lower + scale * split) & MASK64;
        this.range = scale * ((1n << PRECISION) - split);
      }
      if (this.range < RENORM) {
        this.lower = (this.lower << 32n) & MASK64;
        this.range <<= 32n;
        this.point = (this.point << 32n) & MASK64;
        if (this.pos < this.words.length) this.point |= this.words[this.pos++];
      }
      out[i] = bit;
      this.room += Math.log2(bit ? k[i] / 65536 : 1 - k[i] / 65536);
    }
    if (this.room < 0) throw new FormatError("corrupt chunk: a tile segment ends before its bits");
  }

  finish() {
    const exhausted = this.pos >= this.words.length &&
      (this.range === FULL || ((this.point - this.lower) & MASK64) < MAX_DIFFERENCE);
    if (!exhausted) throw new FormatError("corrupt chunk: data left after the last arithmetic-coded bit");
  }
}

// Coder 2's integer context model, row by row, and the tile loop that feeds its probabilities to
// the range decoder: src/rnncodec/entropy/integer.py (IntegerRowModel) and context.py
// (TileContext, RowSession). docs/FORMAT.md, "Coder 2", states the arithmetic.
//
// Every value here is an integer, or an integer times 2^-24, below 2^53 in magnitude (the Python
// model's loader checks that bound for the stored model), so float64 computes each one exactly,
// in any order: the same k as numpy's float32 products and float64 rest.
import { FormatError } from "./container.js";
import { BitDecoder } from "./range.js";
import { ModelError } from "./weights.js";

const ACT = 127;

function layer(stored, name) {
  const get = (part) => stored.tensors[`${name}.${part}`] ?? (() => { throw new ModelError(`integer entropy weights: no ${name}.${part}`); })();
  return { weight: get("weight"), bias: get("bias"), mult: get("mult") };
}

/** An O×I×kh×kw int8 weight's input channels `keep` (indices), as a Float32Array O×K×kh×kw (exact: int8). */
function channelsOf(weight, keep) {
  const [o, i, kh, kw] = weight.shape, k = kh * kw, out = new Float32Array(o * keep.length * k);
  for (let a = 0; a < o; a++) {
    keep.forEach((c, b) => {
      for (let j = 0; j < k; j++) out[(a * keep.length + b) * k + j] = weight.data[(a * i + c) * k + j];
    });
  }
  return out;
}

const range = (a, b) => Array.from({ length: b - a }, (_, i) => a + i);

export class IntegerContextModel {
  constructor(stored) {
    if (stored.kind !== "entropy-int") throw new ModelError(`expected entropy-int model weights, got ${stored.kind}`);
    const cfg = stored.config, c = cfg.context;
    this.cfg = cfg;
    this.c = c;
    const L = cfg.lut_max, S = 2 ** -cfg.shift;
    const table = (name) => Float64Array.from(stored.tensors[`table.${name}`].data);
    this.tanh8 = table("tanh8");
    this.sigmoid = table("sigmoid");
    this.tanh = table("tanh");
    this.prob = table("prob");
    for (const t of [this.tanh8, this.sigmoid, this.tanh, this.prob]) {
      if (t.length !== 2 * L + 1) throw new ModelError("integer entropy weights: a table does not fit the config");
    }
    // each step: weight O×K×kh×kw (inputs as the step feeds them), scale = mult·2^−S, and bias =
    // bias·scale + ½ + the table's offset (what _Affine holds), index clamped to [0, hi]
    const step = (name, keep, act) => {
      const l = layer(stored, name), o = l.weight.shape[0];
      const offset = act === "relu" ? 0 : L;
      const scale = Float64Array.from(l.mult.data, (m) => m * S);
      const bias = Float64Array.from(l.bias.data, (b, i) => b * scale[i % o] + (0.5 + offset));
      return { weight: channelsOf(l.weight, keep ?? range(0, l.weight.shape[1])), o, kh: l.weight.shape[2],
        kw: l.weight.shape[3], scale, bias, hi: act === "relu" ? ACT : 2 * L };
    };
    const m = c.masked, s = c.state, r = c.row;
    this.layers = {
      masked: step("masked"),
      iter_in: step("iter_in"),
      iter_lstm: step("iter_lstm"),
      iter_out: step("iter_out"),
      row_known: step("row_lstm", [...range(0, m), ...range(m + s, m + s + r)]),
      row_ctx: step("row_lstm", range(m, m + s)),
      head_known: step("head1", range(0, r + m), "relu"),
      head_ctx: step("head1", range(r + m, r + m + s), "relu"),
      head2: step("head2"),
    };
  }

  /** Raw products Σ w·x of a conv, O×oh×ow, from a C×H×W input zero-padded by (ph, pw): an
   * im2col copy (each output position's K = C·kh·kw inputs together), then dot products, four
   * outputs at a time so that each input read serves four of them. */
  static products(l, x, C, H, W, ph, pw) {
    const { weight, o, kh, kw } = l, oh = H + 2 * ph - kh + 1, ow = W + 2 * pw - kw + 1;
    const L = oh * ow, K = C * kh * kw, cols = new Float32Array(L * K);
    for (let ci = 0; ci < C; ci++) {
      for (let i = 0; i < kh; i++) {
        for (let j = 0; j < kw; j++) {
          const k = (ci * kh + i) * kw + j;
          for (let y = 0; y < oh; y++) {
            const sy = y + i - ph;
            if (sy < 0 || sy >= H) continue;
            const src = (ci * H + sy) * W + j - pw, x0 = Math.max(0, pw - j), x1 = Math.min(ow, W + pw - j);
            for (let xx = x0; xx < x1; xx++) cols[(y * ow + xx) * K + k] = x[src + xx];
          }
        }
      }
    }
    const out = new Float64Array(o * L);
    let a = 0;
    for (; a + 4 <= o; a += 4) {
      const w0 = a * K, w1 = w0 + K, w2 = w1 + K, w3 = w2 + K;
      let q = 0;
      for (; q + 2 <= L; q += 2) { // two positions by four outputs: each weight read serves two, each input four
        const c = q * K, d = c + K;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0, t0 = 0, t1 = 0, t2 = 0, t3 = 0;
        for (let k = 0; k < K; k++) {
          const u = cols[c + k], v = cols[d + k];
          const x0 = weight[w0 + k], x1 = weight[w1 + k], x2 = weight[w2 + k], x3 = weight[w3 + k];
          s0 += x0 * u; s1 += x1 * u; s2 += x2 * u; s3 += x3 * u;
          t0 += x0 * v; t1 += x1 * v; t2 += x2 * v; t3 += x3 * v;
        }
        out[a * L + q] = s0; out[(a + 1) * L + q] = s1; out[(a + 2) * L + q] = s2; out[(a + 3) * L + q] = s3;
        out[a * L + q + 1] = t0; out[(a + 1) * L + q + 1] = t1; out[(a + 2) * L + q + 1] = t2; out[(a + 3) * L + q + 1] = t3;
      }
      for (; q < L; q++) {
        const c = q * K;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (let k = 0; k < K; k++) {
          const v = cols[c + k];
          s0 += weight[w0 + k] * v; s1 += weight[w1 + k] * v; s2 += weight[w2 + k] * v; s3 += weight[w3 + k] * v;
        }
        out[a * L + q] = s0; out[(a + 1) * L + q] = s1; out[(a + 2) * L + q] = s2; out[(a + 3) * L + q] = s3;
      }
    }
    for (; a < o; a++) {
      for (let q = 0; q < L; q++) {
        let s0 = 0;
        for (let k = 0; k < K; k++) s0 += weight[a * K + k] * cols[q * K + k];
        out[a * L + q] = s0;
      }
    }
    return out;
  }

  /** acc = products·scale + bias, `bias` per output, or per value (O×n: parts computed before). */
  static affine(l, p, n, bias = l.bias, perValue = false) {
    for (let a = 0; a < l.o; a++) {
      const sc = l.scale[a];
      for (let q = 0; q < n; q++) {
        const at = a * n + q;
        p[at] = p[at] * sc + (perValue ? bias[at] : bias[a]);
      }
    }
    return p;
  }

  /** Table indices (or the ReLU's values) of accumulators, clamped: floor(acc) in [0, hi]. */
  static index(l, acc) {
    for (let i = 0; i < acc.length; i++) {
      const v = Math.floor(acc[i]);
      acc[i] = v < 0 ? 0 : v > l.hi ? l.hi : v;
    }
    return acc;
  }

  /** tanh8 of a conv's indices. */
  conv(l, x, C, H, W, ph, pw) {
    const oh = H + 2 * ph - l.kh + 1, ow = W + 2 * pw - l.kw + 1;
    const idx = IntegerContextModel.index(l, IntegerContextModel.affine(l, IntegerContextModel.products(l, x, C, H, W, ph, pw), oh * ow));
    for (let i = 0; i < idx.length; i++) idx[i] = this.tanh8[idx[i]];
    return idx;
  }

  /** LSTM cell from 4H×n gate indices (i, f, o, j) and the cell state (null: zeros). */
  cell(idx, H, n, c) {
    const { cell_frac: Q, lut_frac: F, lut_max: L, cell_max: cmax } = this.cfg;
    const half = 2 ** (Q - 1), inv = 2 ** -Q, halfF = 2 ** (Q - F - 1), invF = 2 ** -(Q - F);
    const h = new Float64Array(H * n), cNew = new Float64Array(H * n);
    for (let q = 0; q < H * n; q++) {
      const i = this.sigmoid[idx[q]], f = this.sigmoid[idx[H * n + q]];
      const o = this.sigmoid[idx[2 * H * n + q]], j = this.tanh[idx[3 * H * n + q]];
      const x = c ? i * j + f * c[q] : i * j;
      let cc = Math.floor((x + half) * inv);
      cc = cc < -cmax ? -cmax : cc > cmax ? cmax : cc;
      cNew[q] = cc;
      let ti = Math.floor((cc + halfF) * invF) + L;
      ti = ti < 0 ? 0 : ti > 2 * L ? 2 * L : ti;
      h[q] = Math.floor((o * this.tanh8[ti] + half) * inv);
    }
    return [h, cNew];
  }

  /** From the previous iteration's C×h×w bits (±1, 0 unknown): iteration t's context for every
   * row, and the state for the next iteration. */
  beginIteration(prev, state, t, h, w) {
    const { c, layers } = this, n = h * w, s = c.state;
    const x = this.conv(layers.iter_in, prev, c.bits, h, w, 1, 1);
    const hc = state ? state[0] : new Float64Array(s * n);
    const both = new Float64Array(2 * s * n);
    both.set(x);
    both.set(hc, s * n);
    const l = layers.iter_lstm;
    const gates = IntegerContextModel.index(l, IntegerContextModel.affine(l, IntegerContextModel.products(l, both, 2 * s, 1, n, 0, 0), n));
    const [hNew, cNew] = this.cell(gates, s, n, state ? state[1] : null);
    const ctx = this.conv(layers.iter_out, hNew, s, h, w, 1, 1);
    const row = IntegerContextModel.affine(layers.row_ctx, IntegerContextModel.products(layers.row_ctx, ctx, s, h, w, 0, 1), n);
    const head = IntegerContextModel.affine(layers.head_ctx, IntegerContextModel.products(layers.head_ctx, ctx, s, 1, n, 0, 0), n);
    const bias = Math.min(t, c.iterations - 1) * layers.head2.o;
    return [{ row, head, bias, n }, [hNew, cNew]];
  }

  /** Row y's C×w values k of P(1) = k/2^16 from the C×rows_above×w bits above it. */
  rowProbabilities(known, it, y, rows, w) {
    const { c, layers } = this, r = c.row, m = c.masked;
    const above = this.conv(layers.masked, known, c.bits, c.rows_above, w, 0, c.kernel_w >> 1);
    const inputs = new Float64Array((m + r) * w);
    inputs.set(above);
    if (rows) inputs.set(rows[0], m * w);
    const rk = layers.row_known;
    const gates = IntegerContextModel.products(rk, inputs, m + r, 1, w, 0, 1);
    const ctxRow = (bias, channels) => { // this row's slice of an iteration context part (channels×h×w)
      const out = new Float64Array(channels * w);
      for (let a = 0; a < channels; a++) out.set(bias.subarray((a * it.n) + y * w, (a * it.n) + y * w + w), a * w);
      return out;
    };
    IntegerContextModel.index(rk, IntegerContextModel.affine(rk, gates, w, ctxRow(it.row, 4 * r), true));
    const [h, cell] = this.cell(gates, r, w, rows ? rows[1] : null);
    const hk = layers.head_known, hin = new Float64Array((r + m) * w);
    hin.set(h);
    hin.set(above, r * w);
    const hidden = IntegerContextModel.index(hk, IntegerContextModel.affine(hk, IntegerContextModel.products(hk, hin, r + m, 1, w, 0, 0), w, ctxRow(it.head, c.head), true));
    const out = layers.head2;
    const k = IntegerContextModel.index(out, IntegerContextModel.affine(out, IntegerContextModel.products(out, hidden, c.head, 1, w, 0, 0), w, out.bias.subarray(it.bias, it.bias + out.o)));
    for (let i = 0; i < k.length; i++) k[i] = this.prob[k[i]];
    return [k, [h, cell]];
  }
}

/** One tile's context-model state while its iterations are decoded in order (TileContext with
 * RowSession.decode). */
export class TileDecoder {
  constructor(model, bits, h, w) {
    this.model = model;
    this.shape = [bits, h, w];
    this.prev = new Float64Array(bits * h * w);
    this.state = null;
    this.t = 0;
  }

  /** Decode the next iteration's segment; `active` (h×w 0/1, or null for all) marks the blocks
   * coded in it. Returns its C×h×w 0/1 bits (0 at stopped blocks). */
  iteration(segment, active) {
    const [C, h, w] = this.shape, { model } = this, k = model.c.rows_above;
    const anyActive = !active || active.some((a) => a);
    if (!anyActive && segment.length) throw new FormatError("corrupt chunk: data for a tile whose blocks have all stopped");
    const dec = anyActive ? new BitDecoder(segment) : null;
    const known = new Float64Array(C * (h + k) * w);
    const out = new Uint8Array(C * h * w);
    const [it, state] = model.beginIteration(this.prev, this.state, this.t, h, w);
    let rows = null;
    for (let y = 0; y < h; y++) {
      const window = new Float64Array(C * k * w); // the k rows above row y
      for (let ci = 0; ci < C; ci++) window.set(known.subarray((ci * (h + k) + y) * w, (ci * (h + k) + y + k) * w), ci * k * w);
      let p;
      [p, rows] = model.rowProbabilities(window, it, y, rows, w);
      const cols = [];
      for (let x = 0; x < w; x++) if (!active || active[y * w + x]) cols.push(x);
      if (!cols.length) continue;
      const probs = new Float64Array(C * cols.length), bits = new Uint8Array(C * cols.length);
      for (let ci = 0; ci < C; ci++) cols.forEach((x, j) => { probs[ci * cols.length + j] = p[ci * w + x]; });
      dec.decode(probs, bits);
      for (let ci = 0; ci < C; ci++) {
        cols.forEach((x, j) => {
          const b = bits[ci * cols.length + j];
          out[(ci * h + y) * w + x] = b;
          known[(ci * (h + k) + y + k) * w + x] = b * 2 - 1;
        });
      }
    }
    if (dec) dec.finish();
    for (let ci = 0; ci < C; ci++) this.prev.set(known.subarray((ci * (h + k) + k) * w, (ci * (h + k) + k + h) * w), ci * h * w);
    this.state = state;
    this.t += 1;
    return out;
  }
}

/** Coder 0: each iteration's bits of the active blocks, C-major, packed MSB first. */
export class RawTileDecoder {
  constructor(bits, h, w) {
    this.shape = [bits, h, w];
  }

  iteration(segment, active) {
    const [C, h, w] = this.shape;
    const positions = [];
    for (let q = 0; q < h * w; q++) if (!active || active[q]) positions.push(q);
    const size = C * positions.length;
    if (segment.length !== (size + 7) >> 3) {
      throw new FormatError(`corrupt chunk: raw segment of ${segment.length} bytes, expected ${(size + 7) >> 3}`);
    }
    const out = new Uint8Array(C * h * w);
    for (let i = 0; i < size; i++) {
      const ci = Math.floor(i / positions.length), q = positions[i % positions.length];
      out[ci * h * w + q] = (segment[i >> 3] >> (7 - (i & 7))) & 1;
    }
    return out;
  }
}

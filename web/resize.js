// Pillow's Lanczos resampling of 8-bit images (libImaging/Resample.c): how rnncodec shows an
// image coded at reduced size at its display size (docs/FORMAT.md, "Coded at reduced size").
// Separable, horizontal pass first, with the coefficients in 22-bit fixed point as Pillow's.

const PRECISION_BITS = 32 - 8 - 2;
const SUPPORT = 3;

const sinc = (x) => (x === 0 ? 1 : Math.sin(x * Math.PI) / (x * Math.PI));
const lanczos = (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0);

function coefficients(inSize, outSize) {
  const scale = inSize / outSize, filterscale = Math.max(scale, 1), support = SUPPORT * filterscale;
  const ksize = Math.ceil(support) * 2 + 1, bounds = new Int32Array(outSize * 2), kk = new Int32Array(outSize * ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale, ss = 1 / filterscale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    const k = new Float64Array(xmax);
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      k[x] = lanczos((x + xmin - center + 0.5) * ss);
      ww += k[x];
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? k[x] / ww : k[x];
      kk[xx * ksize + x] = Math.trunc(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
    }
    bounds[2 * xx] = xmin;
    bounds[2 * xx + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

const clip8 = (v) => (v >= 1 << (PRECISION_BITS + 8) ? 255 : v <= 0 ? 0 : Math.floor(v / (1 << PRECISION_BITS)));

/** An H×W×`channels` byte image resampled to width×height. */
export function lanczosResize(pixels, w, h, width, height, channels = 3) {
  const horiz = coefficients(w, width), vert = coefficients(h, height);
  const first = vert.bounds[0], last = vert.bounds[2 * height - 2] + vert.bounds[2 * height - 1];
  const rows = last - first, tmp = new Uint8Array(rows * width * channels);
  for (let y = 0; y < rows; y++) {
    for (let xx = 0; xx < width; xx++) {
      const xmin = horiz.bounds[2 * xx], xmax = horiz.bounds[2 * xx + 1], k = xx * horiz.ksize;
      for (let c = 0; c < channels; c++) {
        let ss = 1 << (PRECISION_BITS - 1);
        for (let x = 0; x < xmax; x++) ss += pixels[((y + first) * w + x + xmin) * channels + c] * horiz.kk[k + x];
        tmp[(y * width + xx) * channels + c] = clip8(ss);
      }
    }
  }
  const out = new Uint8Array(height * width * channels);
  for (let yy = 0; yy < height; yy++) {
    const ymin = vert.bounds[2 * yy] - first, ymax = vert.bounds[2 * yy + 1], k = yy * vert.ksize;
    for (let xx = 0; xx < width * channels; xx++) {
      let ss = 1 << (PRECISION_BITS - 1);
      for (let y = 0; y < ymax; y++) ss += tmp[(y + ymin) * width * channels + xx] * vert.kk[k + y];
      out[yy * width * channels + xx] = clip8(ss);
    }
  }
  return out;
}

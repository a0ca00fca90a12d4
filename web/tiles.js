// Tiles (src/rnncodec/tiles.py): the image is coded as overlapping tiles whose inner edges lie on
// the 16-pixel grid; on decode each tile is weighted by a ramp across the 2·overlap band it
// shares with a neighbour, and the weighted sum is normalised, so the seams cross-fade.

const STRIDE = 16;

/** Python's and numpy's round: half to even. */
function roundEven(v) {
  const f = Math.floor(v), d = v - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
}

function cuts(size, tile) {
  const n = Math.ceil(size / tile);
  return [...Array.from({ length: n }, (_, i) => roundEven((i * size) / n / 16) * 16), size];
}

/** Every tile's coded region { y0, y1, x0, x1 } in raster order, and its block grid [rows, cols]. */
export function planTiles(height, width, tile, overlap) {
  const ys = cuts(height, tile), xs = cuts(width, tile), boxes = [];
  for (let i = 0; i + 1 < ys.length; i++) {
    for (let j = 0; j + 1 < xs.length; j++) {
      const box = { y0: Math.max(0, ys[i] - overlap), y1: Math.min(height, ys[i + 1] + overlap),
        x0: Math.max(0, xs[j] - overlap), x1: Math.min(width, xs[j + 1] + overlap) };
      box.grid = [Math.ceil((box.y1 - box.y0) / STRIDE), Math.ceil((box.x1 - box.x0) / STRIDE)];
      boxes.push(box);
    }
  }
  return boxes;
}

function ramp(lo, hi, size, overlap) {
  const w = new Float32Array(hi - lo).fill(1);
  if (overlap) {
    for (let i = 0; i < w.length; i++) {
      const p = Math.fround(lo + i + 0.5);
      if (lo > 0) w[i] = Math.min(w[i], Math.fround(Math.fround(p - lo) / (2 * overlap)));
      if (hi < size) w[i] = Math.min(w[i], Math.fround(Math.fround(hi - p) / (2 * overlap)));
    }
  }
  return w;
}

/** Blend tiles' reconstructions (each 3×Hp×Wp float32 planes in [−0.5, 0.5], padded to the
 * stride; `boxes` their regions) into an H×W×3 8-bit image, in float32 as the Python canvas. */
export function blend(height, width, overlap, boxes, recons) {
  const sum = new Float32Array(height * width * 3), weight = new Float32Array(height * width);
  boxes.forEach((box, b) => {
    const wy = ramp(box.y0, box.y1, height, overlap), wx = ramp(box.x0, box.x1, width, overlap);
    const recon = recons[b], hp = box.grid[0] * STRIDE, wp = box.grid[1] * STRIDE;
    for (let y = box.y0; y < box.y1; y++) {
      for (let x = box.x0; x < box.x1; x++) {
        const wt = Math.fround(wy[y - box.y0] * wx[x - box.x0]), at = y * width + x;
        const src = (y - box.y0) * wp + (x - box.x0);
        for (let c = 0; c < 3; c++) sum[at * 3 + c] += Math.fround(recon[c * hp * wp + src] * wt);
        weight[at] += wt;
      }
    }
  });
  const out = new Uint8Array(height * width * 3);
  for (let i = 0; i < out.length; i++) {
    let v = Math.fround(sum[i] / weight[(i / 3) | 0]);
    v = Math.fround(Math.fround(v + 0.5) * 255);
    v = roundEven(v);
    out[i] = v < 0 ? 0 : v > 255 ? 255 : v;
  }
  return out;
}

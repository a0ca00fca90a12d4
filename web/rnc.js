// rnncodec's progressive decoder for the browser: decode an .rnc stream as it downloads, and call
// back with the image after each complete iteration.
//
//   import { decode } from "./rnc.js";
//   const result = await decode(fetch("photo.rnc"), {
//     models: "models/",             // a folder holding the models the file names, by id (below)
//     onFrame: ({ image, iteration }) => ctx.putImageData(image, 0, 0),
//   });
//
// Data flows as in the Python decoder: container -> range decoder + integer context model ->
// bits -> the image model's decoder (onnxruntime-web) -> tiles -> image. The bits are exact (the
// context model is integer arithmetic); the pixels come from the float image model, so they
// match Python's to within rounding, as another engine's do.
//
// Models are found by the ids the file's header names, in `models`: image-ID.safetensors,
// image-ID.first-decoder.onnx and image-ID.next-decoder.onnx (the image model's weights and its
// decoding steps, `rnncodec export-onnx`), and entropy-int-ID.safetensors (coder 2's context
// model). web/stage_models.py copies the package's models there under those names. Each weights
// file must hash to the id asked for.
import { FormatError, StreamReader, alphaPlane, bitsCrc, bitsCrcUpdate, blockCounts, readChunk, readHeader, splitSegments } from "./container.js";
import { IntegerContextModel, RawTileDecoder, TileDecoder } from "./context.js";
import { ImageModel } from "./imagemodel.js";
import { lanczosResize } from "./resize.js";
import { blend, planTiles } from "./tiles.js";
import { ModelError, loadWeights } from "./weights.js";

export { FormatError, ModelError };

export const DEFAULT_MAX_PIXELS = 89478485; // Pillow's, as rnncodec's decoder

const cache = new Map(); // URL -> Promise of what was made of it: models load once per page

function cached(key, make) {
  if (!cache.has(key)) {
    const made = make();
    made.catch(() => cache.delete(key)); // a failed load may succeed later (a network error)
    cache.set(key, made);
  }
  return cache.get(key);
}

async function fetchBytes(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (err) {
    throw new ModelError(`cannot fetch ${url}: ${err.message}`);
  }
  if (!response.ok) throw new ModelError(`cannot fetch ${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

const modelUrl = (models, name) => (typeof models === "function" ? models(name) : new URL(name, new URL(models, globalThis.location?.href)).href);

function weightsAt(models, name, id) {
  const url = modelUrl(models, name);
  return cached(`weights ${url}`, async () => loadWeights(await fetchBytes(url), id, name));
}

async function ortModule(options) {
  if (options.ort) return options.ort;
  try {
    return await import("onnxruntime-web"); // an import map names it in a page (web/index.html)
  } catch {
    throw new ModelError("onnxruntime-web is not available: pass it as the `ort` option, or map it in an import map");
  }
}

function imageModelAt(models, weights, ort, options) {
  const id = weights.id;
  const key = `image ${modelUrl(models, `image-${id}.first-decoder.onnx`)}`;
  return cached(key, async () => {
    const graphs = {};
    for (const which of ["first", "next"]) graphs[which] = await fetchBytes(modelUrl(models, `image-${id}.${which}-decoder.onnx`));
    return ImageModel.create(ort, weights, graphs, options);
  });
}

async function openStream(source, signal) {
  source = await source;
  if (typeof source === "string" || source instanceof URL) source = await fetch(source, { signal });
  if (typeof Response !== "undefined" && source instanceof Response) {
    if (!source.ok) throw new FormatError(`cannot fetch ${source.url}: HTTP ${source.status}`);
    return source.body;
  }
  if (source instanceof Blob) return source.stream(); // a File from an <input type=file>, say
  if (source instanceof Uint8Array || source instanceof ArrayBuffer) return new Blob([source]).stream();
  return source; // a ReadableStream
}

function rgba(pixels, alpha, width, height) {
  const data = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    data[4 * i] = pixels[3 * i];
    data[4 * i + 1] = pixels[3 * i + 1];
    data[4 * i + 2] = pixels[3 * i + 2];
    data[4 * i + 3] = alpha ? alpha[i] : 255;
  }
  return typeof ImageData !== "undefined" ? new ImageData(data, width, height) : { data, width, height };
}

/**
 * Decode an .rnc stream: `source` a fetch() Response (or its promise), a ReadableStream, a Blob,
 * bytes, or a URL. Resolves with { width, height, iterations, announced, image, truncated, note }.
 *
 * Options: `models` (a folder URL, or name -> URL), `onFrame({ image, iteration, iterations })`
 * after each complete iteration, `onBits(iteration, tile, bits)` with each tile's decoded bits,
 * `bitsOnly` (decode the bits alone: no image model), `ort` (the onnxruntime-web module),
 * `strict` (a stream cut inside a chunk is an error; by default the complete iterations stand and
 * `note` says so), `maxPixels`, `signal` (an AbortSignal), `executionProviders` (ORT's).
 * A corrupt stream, one cut inside its header, or a wrong model rejects with a FormatError or a
 * ModelError; no frame is shown of an iteration whose bits fail their CRC.
 */
export async function decode(source, options = {}) {
  const { models = "models/", onFrame, onBits, bitsOnly = false, strict = false, maxPixels = DEFAULT_MAX_PIXELS, signal } = options;
  const reader = new StreamReader(await openStream(source, signal));
  try {
    const header = await readHeader(reader, maxPixels);
    const [width, height] = header.displaySize;
    if (header.coderId === 1) {
      throw new FormatError("the file was written by coder 1, whose float context model is not portable: decode it with the Python rnncodec");
    }
    if (header.coderId !== 0 && header.coderId !== 2) throw new FormatError(`unknown coder id ${header.coderId}`);
    const imageWeights = await weightsAt(models, `image-${header.modelId}.safetensors`, header.modelId);
    const cfg = imageWeights.config;
    if (header.iterations > cfg.iterations) {
      throw new FormatError(`the file claims ${header.iterations} iterations; its model has at most ${cfg.iterations}`);
    }
    const context = header.coderId === 2
      ? new IntegerContextModel(await weightsAt(models, `entropy-int-${header.entropyId}.safetensors`, header.entropyId)) : null;
    if (context && context.c.bits !== cfg.bits) {
      throw new ModelError(`the entropy model codes ${context.c.bits} bits per position, the image model ${cfg.bits}`);
    }
    const model = bitsOnly ? null : await imageModelAt(models, imageWeights, await ortModule(options), options);
    const boxes = planTiles(header.height, header.width, header.tile, header.overlap);
    const counts = await blockCounts(header, boxes.map((b) => b.grid));
    const alpha = await alphaPlane(header);
    const tiles = boxes.map(({ grid: [h, w] }) => (context ? new TileDecoder(context, cfg.bits, h, w) : new RawTileDecoder(cfg.bits, h, w)));
    const states = boxes.map(() => null);
    let t = 0, image = null, note = null;
    for (;;) {
      let chunk;
      try {
        chunk = await readChunk(reader, header, t);
      } catch (err) {
        if (strict || !(err instanceof FormatError) || !err.message.startsWith("truncated inside chunk") || t === 0) throw err;
        note = `the stream ends inside chunk ${t + 1}: decoded the ${t} complete iteration${t > 1 ? "s" : ""} of ${header.iterations}`;
        break;
      }
      if (chunk === null) break;
      const segments = splitSegments(chunk.payload, boxes.length);
      let crc = bitsCrc(t);
      for (let i = 0; i < boxes.length; i++) {
        const active = counts ? counts[i].map((c) => (c > t ? 1 : 0)) : null;
        const bits = tiles[i].iteration(segments[i], active);
        crc = bitsCrcUpdate(bits, crc);
        onBits?.(t, i, bits);
        if (model) {
          const [h, w] = boxes[i].grid, signed = new Float32Array(bits.length);
          for (let q = 0; q < bits.length; q++) signed[q] = active && !active[q % (h * w)] ? 0 : bits[q] * 2 - 1;
          const mask = t > 0 && active && active.some((a) => !a) ? active : null;
          states[i] = await model.step(states[i], signed, cfg.bits, h, w, mask);
        }
      }
      if (crc !== chunk.crc) throw new FormatError(`chunk ${t + 1} CRC mismatch: the file is corrupt or was coded with another model`);
      t += 1;
      if (model) {
        let pixels = blend(header.height, header.width, header.overlap, boxes, states.map((s) => s.recon));
        if (header.display) pixels = lanczosResize(pixels, header.width, header.height, width, height);
        image = rgba(pixels, alpha, width, height);
        await onFrame?.({ image, iteration: t, iterations: header.iterations });
      }
    }
    if (t === 0) throw new FormatError("the file holds no iterations");
    return { width, height, iterations: t, announced: header.iterations, image, truncated: note !== null, note, header };
  } finally {
    reader.cancel();
  }
}

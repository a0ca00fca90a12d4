// The image model's decoder through ONNX Runtime Web: one graph per decoding step
// (image-ID.first-decoder.onnx, image-ID.next-decoder.onnx, made by `rnncodec export-onnx`),
// with x̂, the iteration, the blocks coded (`mask`) and the decoder's recurrent states as inputs,
// and x̂ and the states after as outputs (NEXT + their names). The graphs hold no weights: their
// weights are initializers whose data is in an external file, WEIGHTS_FILE, laid out here from the
// .safetensors as src/rnncodec/onnx_codec.py's `weights_data` does, and handed to each session.
import { ModelError } from "./weights.js";

const NEXT = "next_";
const STRIDE = 16;
const WEIGHTS_FILE = "weights";

/** WEIGHTS_FILE's bytes: the tensors in fp32, one after another in the order of their names. */
function weightsData(tensors) {
  const names = Object.keys(tensors).sort();
  const data = new Float32Array(names.reduce((n, name) => n + tensors[name].data.length, 0));
  let at = 0;
  for (const name of names) {
    data.set(tensors[name].data, at);
    at += tensors[name].data.length;
  }
  return new Uint8Array(data.buffer);
}

export class ImageModel {
  /** `ort`: the onnxruntime-web module; `graphs`: { first, next } graph bytes; `weights`: loadWeights'. */
  static create(ort, weights, graphs, options = {}) {
    if (weights.kind !== "image") throw new ModelError(`expected image model weights, got ${weights.kind}`);
    const model = new ImageModel();
    model.ort = ort;
    model.id = weights.id;
    model.config = weights.config;
    model.weightsData = weightsData(weights.tensors);
    model.graphs = graphs;
    model.options = options;
    model.sessions = {};
    return model;
  }

  /** A step's session, built when first used: the first frame waits for the first graph's alone. */
  session(which) {
    this.sessions[which] ??= this.ort.InferenceSession.create(this.graphs[which], {
      executionProviders: this.options.executionProviders ?? ["wasm"], graphOptimizationLevel: "all",
      externalData: [{ path: WEIGHTS_FILE, data: this.weightsData }] }).catch((err) => {
      delete this.sessions[which];
      throw new ModelError(`image-${this.id}.${which}-decoder.onnx: not a graph of this model (${String(err.message ?? err).split("\n")[0]})`);
    });
    return this.sessions[which];
  }

  /** One tile's decoding step: from its state (null before the first), the C×h×w bits (float
   * ±1, 0 where stopped) and the h×w active mask (null: all). Returns the next state; its
   * `recon` is the 1×3×16h×16w reconstruction in [−0.5, 0.5]. */
  async step(state, bits, C, h, w, mask) {
    const { ort } = this;
    const first = state === null;
    const session = await this.session(first ? "first" : "next");
    const values = first ? { recon: new ort.Tensor("float32", new Float32Array(3 * h * w * STRIDE * STRIDE), [1, 3, h * STRIDE, w * STRIDE]) }
      : { ...state.values };
    values.bits = new ort.Tensor("float32", bits, [1, C, h, w]);
    const t = first ? 0 : state.t;
    const feeds = {};
    for (const name of session.inputNames) {
      if (name === "t") feeds.t = new ort.Tensor("int64", BigInt64Array.of(BigInt(t)), []);
      else if (name === "mask") feeds.mask = new ort.Tensor("float32", mask ? Float32Array.from(mask) : new Float32Array(h * w).fill(1), [1, 1, h, w]);
      else if (name in values) feeds[name] = values[name];
      else throw new ModelError(`image-${this.id} decoder graph wants ${name}, which its states do not hold`);
    }
    const outputs = await session.run(feeds);
    if (first) this.session("next").catch(() => {}); // built while the first frame shows; its error, if any, at its use
    const next = {};
    for (const [name, tensor] of Object.entries(outputs)) if (name.startsWith(NEXT)) next[name.slice(NEXT.length)] = tensor;
    return { t: t + 1, values: next, recon: next.recon.data };
  }
}

// rnncodec's weights files (.safetensors, config JSON in the metadata) and their ids: the first
// 8 bytes of SHA-256 over the kind, the config and every tensor (src/rnncodec/stored.py). A file
// names its models by id, and a model loads only if its bytes hash to the id asked for.

export class ModelError extends Error {
  constructor(message) {
    super(message);
    this.name = "ModelError";
  }
}

const DTYPES = { F16: ["float16", 2], I8: ["int8", 1], I32: ["int32", 4], F32: ["float32", 4] };

function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** A tensor's values: int8 and int32 as typed arrays, float16 widened to a Float32Array. */
function values(dtype, bytes) {
  const copy = bytes.slice().buffer; // aligned
  if (dtype === "int8") return new Int8Array(copy);
  if (dtype === "int32") return new Int32Array(copy);
  if (dtype === "float32") return new Float32Array(copy);
  const half = new Uint16Array(copy), out = new Float32Array(half.length);
  for (let i = 0; i < half.length; i++) out[i] = halfToFloat(half[i]);
  return out;
}

const pythonTuple = (shape) => (shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`);

/** The weights in `bytes` (a .safetensors file): { kind, config, metadata, tensors: name ->
 * { dtype, shape, data } }, checked against `expectedId` (hex). */
export async function loadWeights(bytes, expectedId, where) {
  let header, body;
  try {
    const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    body = bytes.subarray(8 + n);
  } catch {
    throw new ModelError(`${where}: not a weights file`);
  }
  const meta = header.__metadata__ ?? {};
  if (!meta.kind || !meta.config) throw new ModelError(`${where} is not an rnncodec weights file (no config in its metadata)`);
  const tensors = {};
  const parts = [new TextEncoder().encode(`${meta.kind}\0${meta.config}\0`)];
  for (const name of Object.keys(header).filter((k) => k !== "__metadata__").sort()) {
    const { dtype, shape, data_offsets: [a, b] } = header[name];
    if (!DTYPES[dtype] || b > body.length) throw new ModelError(`${where}: tensor ${name} cannot be read`);
    const raw = body.subarray(a, b);
    tensors[name] = { dtype: DTYPES[dtype][0], shape, data: values(DTYPES[dtype][0], raw) };
    parts.push(new TextEncoder().encode(`${name}:${pythonTuple(shape)}:torch.${DTYPES[dtype][0]}\0`), raw);
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", await new Blob(parts).arrayBuffer()));
  const id = Array.from(digest.subarray(0, 8), (x) => x.toString(16).padStart(2, "0")).join("");
  if (expectedId && id !== expectedId) throw new ModelError(`${where} holds model ${id}, not ${expectedId}`);
  return { kind: meta.kind, config: JSON.parse(meta.config), metadata: meta, tensors, id };
}

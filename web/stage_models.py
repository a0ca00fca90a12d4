"""Put the models the web decoder needs into a folder, under the names it asks for (web/rnc.js):

    python web/stage_models.py FOLDER [--no-graphs]

For every image model and integer context model that rnncodec finds ($RNNCODEC_MODEL_PATH, then
the package): image-ID.safetensors and entropy-int-ID.safetensors, and each image model's
decoding steps, image-ID.first-decoder.onnx and image-ID.next-decoder.onnx (the package's, or
exported here, which needs rnncodec's dev extra). Coder 1's float context models are left out: the
web decoder refuses their files.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from rnncodec.stored import load_weights
from rnncodec.zoo import find_graphs, graph_name, load_image_model, weight_files

KINDS = ("image", "entropy-int")


def stage(folder: Path, graphs: bool = True) -> list[Path]:
    """Copy (and export, where missing) every model into `folder`; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written, seen = [], set()
    for path in weight_files():
        stored = load_weights(path)
        if stored.kind not in KINDS or (stored.kind, stored.model_id) in seen:
            continue  # the first found wins, as rnncodec's own lookup
        seen.add((stored.kind, stored.model_id))
        written.append(Path(shutil.copyfile(path, folder / f"{stored.kind}-{stored.model_id.hex()}.safetensors")))
        if graphs and stored.kind == "image":
            written += _decoder_graphs(path, stored.model_id, folder)
    return written


def _decoder_graphs(weights: Path, model_id: bytes, folder: Path) -> list[Path]:
    names = [graph_name(model_id, first, decoder=True) for first in (True, False)]
    source = find_graphs(model_id)
    if source is not None:
        return [Path(shutil.copyfile(source / name, folder / name)) for name in names]
    from rnncodec.onnx_export import export_graphs

    with tempfile.TemporaryDirectory() as work:
        export_graphs(load_image_model(weights), Path(work))
        return [Path(shutil.copyfile(Path(work) / name, folder / name)) for name in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--no-graphs", action="store_true", help="the weights alone (the decoder's bitsOnly mode)")
    args = parser.parse_args()
    for path in stage(args.folder, not args.no_graphs):
        print(path)


if __name__ == "__main__":
    main()

"""What an image model does per iteration on one image crop: the binarizer's mean |tanh|, the size
of each update mean |x̂_t − x̂_(t−1)|, and the residual mean |x − x̂_t| (model forward, fp32); and
for each decoder GRU layer its mean update gate z, its state's change |z·(cand − h)|, |h|, and the
input part |x_n| of its candidate, from its convolutions' outputs (TRAINING.md, experiment 6).

    .venv/bin/python tools/iteration_stats.py IMAGE W1.safetensors [W2 …] [--crop 256]
"""
from __future__ import annotations

import argparse

import torch

from rnncodec.image import read_image
from rnncodec.layers.cells import ConvGRU
from rnncodec.zoo import load_image_model


def gate_stats(cell: ConvGRU, seen: list[tuple[float, float, float, float]]) -> list:
    """Hooks on a GRU cell's convolutions that append (z, |z·(cand − h)|, |h|, |x_n|) per call."""
    got: dict = {}

    def state(module, inputs) -> None:  # conv_h sees the state h
        got["h"] = inputs[0]

    def done(module, inputs, out) -> None:  # conv_rh runs last: every part is known
        xz, xr, xn = got["gx"].chunk(3, dim=1)
        hz, _ = got["gh"].chunk(2, dim=1)
        h, z = got["h"], torch.sigmoid(xz + hz)
        cand = torch.tanh(xn + out)
        seen.append((z.mean().item(), (z * (cand - h)).abs().mean().item(), h.abs().mean().item(), xn.abs().mean().item()))

    return [cell.conv_x.register_forward_hook(lambda m, i, out: got.__setitem__("gx", out)),
            cell.conv_h.register_forward_pre_hook(state),
            cell.conv_h.register_forward_hook(lambda m, i, out: got.__setitem__("gh", out)),
            cell.conv_rh.register_forward_hook(done)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("image")
    ap.add_argument("weights", nargs="+")
    ap.add_argument("--crop", type=int, default=256, help="top-left square, a multiple of 16")
    args = ap.parse_args()
    torch.set_num_threads(1)
    pixels = read_image(args.image).pixels[: args.crop, : args.crop]
    x = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255 - 0.5
    for weights in args.weights:
        net = load_image_model(weights).net
        activations: list[float] = []
        hooks = [net.binarizer.conv.register_forward_hook(
            lambda m, i, out, seen=activations: seen.append(out.tanh().abs().mean().item()))]
        gates: list[list] = [[] for _ in net.decoder.rnns]
        for cell, seen in zip(net.decoder.rnns, gates):
            hooks += gate_stats(cell, seen) if isinstance(cell, ConvGRU) else []
        with torch.no_grad():
            _, recons = net(x, net.cfg.iterations)
        for hook in hooks:
            hook.remove()
        updates = [recons[0].abs().mean().item()] + [(b - a).abs().mean().item() for a, b in zip(recons, recons[1:])]
        residuals = [(x - r).abs().mean().item() for r in recons]
        print(weights)
        for name, values in (("|tanh|", activations), ("update", updates), ("residual", residuals)):
            print(f"  {name:9s}" + " ".join(f"{v:.4f}" for v in values))
        for layer, seen in enumerate(gates):
            for k, name in enumerate(("z", "|dh|", "|h|", "|x_n|")):
                if seen:
                    print(f"  dec{layer} {name:5s}" + " ".join(f"{v[k]:.4f}" for v in seen))


if __name__ == "__main__":
    main()

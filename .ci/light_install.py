"""CI: the light install (`pip install .`, no extras) runs every codec command without torch.

Run with the light venv's python, from outside the repository, with a scratch folder: each
command runs through a subprocess, as a user would run it."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

assert importlib.util.find_spec("torch") is None, "the light install must not bring torch"
work, cli = Path(sys.argv[1]), Path(sys.executable).parent / "rnncodec"
y, x = np.mgrid[0:96, 0:136]
pixels = np.stack([x * 255 // 135, y * 255 // 95, (x + y) * 255 // 230], -1).astype(np.uint8)
Image.fromarray(pixels).save(work / "in.png")


def run(*args: object) -> str:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    assert r.returncode == 0, f"{args}: {r.stderr}"
    return r.stdout


for name, options in (("fixed", ["-i", "3"]), ("quality", ["--quality", "50", "--tile", "64", "--overlap", "16"]),
                      ("msssim", ["--target-ms-ssim", "0.9"]), ("budget", ["--bpp", "0.5"]),
                      ("half", ["-i", "2", "--downscale", "2"]), ("wide", ["-i", "2", "--model", "wide"])):
    run(cli, "compress", work / "in.png", "-o", work / f"{name}.rnc", *options)
    run(cli, "decompress", work / f"{name}.rnc", "-o", work / f"{name}.png")
    assert Image.open(work / f"{name}.png").size == (136, 96)
assert "fp32 (onnx)" in run(cli, "info", work / "fixed.rnc")
(work / "folder").mkdir()
Image.fromarray(pixels).save(work / "folder" / "a.png")
run(cli, "compress", work / "folder", "-o", work / "folder.rnc", "-i", "2", "-j", "2")
plugin = ("import sys; from PIL import Image; import rnncodec; im = Image.open(sys.argv[1]); im.iterations = 2; "
          "im.load(); im.save(sys.argv[2], format='RNC', quality=40); Image.open(sys.argv[2]).load(); "
          "assert 'torch' not in sys.modules")
run(sys.executable, "-c", plugin, work / "fixed.rnc", work / "plugin.rnc")
r = subprocess.run([str(cli), "compress", str(work / "in.png"), "-o", str(work / "t.rnc"), "--engine", "torch"],
                   capture_output=True, text=True)
assert r.returncode == 1 and "pip install 'rnncodec[torch]'" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
print("light install: compress, decompress, info, folders and the Pillow plugin without torch")

"""tools/gpu_train.sh --dry-run: the GPU recipe's whole path on the CPU, so it works the first time a GPU is lent."""
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import torch
from conftest import smooth_image
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_train.sh"


def test_gpu_recipe_dry_run_trains_every_run_and_packs_the_results(tmp_path):
    images = tmp_path / "pack" / "photos"
    images.mkdir(parents=True)
    for i in range(5):
        Image.fromarray(smooth_image(64, 80, seed=i)).save(images / f"p{i}.jpg", quality=90)
    data = tmp_path / "data.tar"
    with tarfile.open(data, "w") as tar:
        tar.add(tmp_path / "pack", arcname=".")
    env = {**os.environ, "PYTHON": sys.executable}
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--data", str(data), "--out", str(out)],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    runs = [line.split(":")[0] for line in r.stdout.splitlines() if " steps, " in line]
    assert runs  # every run of RUNS reports
    assert "| cuda" in r.stdout and "| OMP_NUM_THREADS=2 | yes |" in r.stdout  # the CUDA decode check's table
    parts = sorted(out.glob("results.tar.part*"))
    assert parts and all(p.stat().st_size <= 16 * 2**20 for p in parts)  # what the device tool brings back

    back = tmp_path / "back"
    r = subprocess.run(["bash", str(SCRIPT), "--collect", str(out), "--out", str(back)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for run in runs:
        ck = torch.load(back / run / "checkpoint.pt", weights_only=False)
        assert ck["step"] == 3
        assert [Path(d).name for d in ck["train_config"]["data"]] == ["photos"]  # the image folders only, not the runs'
        assert (back / run / "best.safetensors").exists()
        assert any("val_loss" in json.loads(line) for line in (back / run / "log.jsonl").read_text().splitlines())


def test_gpu_recipe_refuses_an_unknown_run():
    r = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--only", "nope"], capture_output=True, text=True)
    assert r.returncode == 2 and "no run named nope" in r.stderr


def test_gpu_recipe_packs_what_it_has_when_it_fails(tmp_path):
    """A failure after the runs started must still bring back what they wrote: GPU time is scarce."""
    images = tmp_path / "pack" / "photos"
    images.mkdir(parents=True)
    Image.fromarray(smooth_image(64, 80, seed=0)).save(images / "p0.jpg", quality=90)
    data = tmp_path / "data.tar"
    with tarfile.open(data, "w") as tar:
        tar.add(tmp_path / "pack", arcname=".")
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--only", "bf16", "--extra", "--no-such-flag",
                        "--data", str(data), "--out", str(out)],
                       capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable}, cwd=tmp_path)
    assert r.returncode == 1 and "run bf16 failed" in r.stderr
    with tarfile.open(fileobj=open(sorted(out.glob("results.tar.part*"))[0], "rb")) as tar:
        assert "bf16/train.tail" in [m.name.removeprefix("./") for m in tar.getmembers()]

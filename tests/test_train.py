"""Training: a few real steps, checkpoints and resume, export, high-entropy tiles, DDP on CPU."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import smooth_image
from PIL import Image

from rnncodec.errors import ModelError
from rnncodec.image import list_images
from rnncodec.train.config import TrainConfig
from rnncodec.train.data import PatchSource, hard_corners, high_entropy_tiles, is_validation
from rnncodec.train.loop import Trainer
from rnncodec.train.losses import ResidualL1
from rnncodec.train.run import lr_at
from rnncodec.zoo import load_image_model


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("train")
    for i in range(6):
        Image.fromarray(smooth_image(64, 80, seed=i)).save(d / f"img{i}.png")
    Image.fromarray(smooth_image(96, 96, seed=9)).save(d / "photo.jpg", quality=90)
    return d


def config(data_dir, out, **kw) -> TrainConfig:
    base = dict(data=[str(data_dir)], out=str(out), preset="tiny", batch=4, steps=6, warmup=2, val_fraction=0.3,
                val_patches=8, val_every=3, log_every=2, threads=1)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory) -> Path:
    """A run folder after 6 steps."""
    out = tmp_path_factory.mktemp("run")
    Trainer(config(data_dir, out), progress=False).run()
    return out


def test_training_logs_and_checkpoints(trained):
    log = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    assert any("val_loss" in r for r in log) and any("patches_per_s" in r for r in log)
    assert torch.load(trained / "checkpoint.pt", weights_only=False)["step"] == 6


def test_resume_continues_the_step_count(data_dir, trained, tmp_path):
    stored = torch.load(trained / "checkpoint.pt", weights_only=False)["optimizer"]["state"]
    assert {s["exp_avg_sq"].dtype for s in stored.values()} == {torch.bfloat16}  # the committed file's size
    here = Trainer(config(data_dir, tmp_path / "copy", steps=9), resume=trained / "checkpoint.pt", progress=False)
    assert here.step == 6
    assert {s["exp_avg_sq"].dtype for s in here.opt.state.values()} == {torch.float32}
    here.run()
    assert torch.load(tmp_path / "copy" / "checkpoint.pt", weights_only=False)["step"] == 9


def test_a_committed_checkpoint_resumes_without_adams_moments(data_dir, trained, tmp_path):
    committed = tmp_path / "default.pt"
    r = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "tools" / "commit_checkpoint.py"),
                        str(trained / "checkpoint.pt"), str(committed)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert committed.stat().st_size < (trained / "checkpoint.pt").stat().st_size / 3
    export = [sys.executable, "-m", "rnncodec.cli", "export"]
    ids = [subprocess.run([*export, str(ck), "-o", str(tmp_path / f"{i}.safetensors")], capture_output=True,
                          text=True).stdout.split()[-1] for i, ck in enumerate((trained / "checkpoint.pt", committed))]
    assert ids[0] == ids[1]  # the same model
    here = Trainer(config(data_dir, tmp_path / "c", steps=8), resume=committed, progress=False)
    assert here.step == 6 and not here.opt.state
    here.run()
    assert torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=False)["step"] == 8


def test_export_writes_loadable_release_weights(data_dir, trained, tmp_path):
    weights = tmp_path / "w.safetensors"
    r = subprocess.run([sys.executable, "-m", "rnncodec.cli", "export", str(trained / "checkpoint.pt"), "-o", str(weights)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    model = load_image_model(weights)
    assert model.model_id.hex() in r.stdout
    assert all(p.dtype == torch.float32 for p in model.net.parameters())
    tuned = Trainer(config(data_dir, tmp_path / "tune", init_from=str(weights)), progress=False)
    assert all(torch.equal(tuned.model.state_dict()[k], v) for k, v in model.net.state_dict().items())


def test_init_from_takes_the_weights_with_a_fresh_schedule(data_dir, trained, tmp_path):
    ck = torch.load(trained / "checkpoint.pt", weights_only=False)
    tuned = Trainer(config(data_dir, tmp_path / "tune", init_from=str(trained / "checkpoint.pt")), progress=False)
    assert tuned.step == 0 and tuned.seconds == 0
    assert all(torch.equal(tuned.model.state_dict()[k], v) for k, v in ck["model"].items())
    with pytest.raises(ModelError, match="another model config"):
        Trainer(config(data_dir, tmp_path / "bad", preset="fast", init_from=str(trained / "checkpoint.pt")), progress=False)


def test_training_reduces_the_loss(data_dir, tmp_path):
    tc = config(data_dir, tmp_path / "r", steps=60, lr=3e-3, batch=8, val_every=1000, seed=1)
    t = Trainer(tc, progress=False)
    x = t.train_src.batch(16, np.random.default_rng(0))
    before = t.loss(x, t.model.eval()(x, 4)[1]).item()
    t.model.train()
    t.run()
    after = t.loss(x, t.model.eval()(x, 4)[1]).item()
    assert after < before


def test_fine_tune_into_priming_and_iteration_gain(data_dir, tmp_path):
    base = Trainer(config(data_dir, tmp_path / "b", steps=1), progress=False)
    base.run()
    primed = Trainer(config(data_dir, tmp_path / "p", steps=1, model_overrides={"priming": 2, "framework": "iteration_gain"},
                            init_from=str(tmp_path / "b" / "checkpoint.pt")), progress=False)
    assert torch.equal(primed.model.decoder.out.weight, base.model.decoder.out.weight)
    assert primed.model.log_gain[1] != 0  # calibrated on a training batch
    primed.run()


def test_gains_learn_at_their_own_rate(data_dir, tmp_path):
    t = Trainer(config(data_dir, tmp_path / "g", steps=2, gain_lr=20, model_overrides={"framework": "iteration_gain"}),
                progress=False)
    rest, gain = t.opt.param_groups
    assert gain["params"][0] is t.model.log_gain and all(p is not t.model.log_gain for p in rest["params"])
    before = t.model.log_gain.detach().clone()
    t.run()
    assert gain["lr"] == pytest.approx(20 * rest["lr"]) and not torch.equal(t.model.log_gain, before)


def test_training_options_sign_bits_and_normalised_iterations(data_dir, tmp_path):
    t = Trainer(config(data_dir, tmp_path / "o", steps=3, binarizer="sign", iteration_weights="normalised"), progress=False)
    assert not t.model.binarizer.stochastic
    t.run()
    assert t.loss_scale is not None and t.loss_scale.shape == (t.unroll,)


def test_train_flags_come_from_the_config(data_dir, tmp_path):
    from rnncodec.cli import build_parser
    from rnncodec.train.config import from_args

    args = build_parser().parse_args(["train", str(data_dir), "--out", str(tmp_path), "--binarizer", "sign", "--crop", "48"])
    tc = from_args(TrainConfig, args, model_overrides={})
    assert tc == TrainConfig(data=[str(data_dir)], out=str(tmp_path), binarizer="sign", crop=48)


def test_ssim_weighted_loss_keeps_the_scale():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) - 0.5
    recons = [x + 0.1 * torch.randn_like(x)]
    plain, weighted = ResidualL1()(x, recons), ResidualL1(ssim_weight=2.0)(x, recons)
    assert torch.isfinite(weighted) and weighted != plain
    assert 0.5 < (weighted / plain).item() < 2.0


def test_high_entropy_tiles_are_the_busiest():
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, 32:] = np.random.default_rng(0).integers(0, 256, (64, 32, 3))
    tiles = high_entropy_tiles(img, 2)
    assert tiles.shape == (2, 32, 32, 3) and all(t.std() > 50 for t in tiles)


def test_hard_crops_come_from_the_busy_part(tmp_path):
    img = np.full((128, 256, 3), 128, np.uint8)
    img[:, 192:] = np.random.default_rng(0).integers(0, 256, (128, 64, 3))  # only the right quarter is busy
    assert {tuple(c) for c in hard_corners(img, 32)} <= {(y, x) for y in range(0, 128, 32) for x in (192, 224)}
    Image.fromarray(img).save(tmp_path / "half.png")
    hard = PatchSource([tmp_path / "half.png"], progress=False, patch=32, hard=1.0).batch(64, np.random.default_rng(0))
    anywhere = PatchSource([tmp_path / "half.png"], progress=False, patch=32).batch(64, np.random.default_rng(0))
    busy = lambda b: (b.std(dim=(1, 2, 3)) > 0.05).float().mean()  # noqa: E731
    assert busy(hard) == 1.0 and busy(anywhere) < 0.6


def test_jpeg_downscale_and_split(data_dir):
    paths = list_images(data_dir)
    assert len(paths) == 7
    src = PatchSource([data_dir / "photo.jpg"], jpeg_downscale=3, progress=False)
    assert src.images[0].shape == (32, 32, 3)
    assert not any(is_validation(p, 0.0) for p in paths)
    names = [Path(f"img{i}.png") for i in range(2000)]
    held = [p for p in names if is_validation(p, 0.3)]
    assert 0.25 < len(held) / len(names) < 0.35  # about the fraction asked for, by name only
    assert {p for p in names if is_validation(p, 0.05)} <= set(held)  # a smaller split is inside a larger one


def test_lr_schedule_warms_up_then_decays():
    tc = TrainConfig(data=[], out="", lr=1e-3, warmup=10, steps=110, min_lr_ratio=0.1)
    assert lr_at(0, tc) == pytest.approx(1e-4)
    assert lr_at(10, tc) == pytest.approx(1e-3)
    assert lr_at(110, tc) == pytest.approx(1e-4)
    timed = TrainConfig(data=[], out="", lr=1e-3, warmup=0, steps=10**9, max_minutes=1.0, min_lr_ratio=0.1)
    assert lr_at(5, timed, seconds=60.0) == pytest.approx(1e-4)


def test_ddp_two_processes_on_cpu(data_dir, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517", "-m", "rnncodec.cli",
           "train", str(data_dir), "--out", str(out), "--preset", "tiny", "--steps", "3", "--batch", "2", "--threads", "1",
           "--val-fraction", "0"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 3


def test_larger_training_crops(data_dir, tmp_path):
    t = Trainer(config(data_dir, tmp_path / "c", crop=48, steps=2), progress=False)
    assert t.train_src.batch(3, np.random.default_rng(0)).shape == (3, 3, 48, 48)
    assert t.val_batch.shape[-2:] == (48, 48)
    t.run()


def test_train_from_a_file_that_is_no_checkpoint_is_one_clean_error(data_dir, tmp_path):
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    for flag in ("--init-from", "--resume-from"):
        r = subprocess.run([sys.executable, "-m", "rnncodec.cli", "train", str(data_dir), "--out", str(tmp_path / "o"),
                            "--preset", "tiny", "--steps", "1", flag, str(bogus)], capture_output=True, text=True)
        assert r.returncode == 5, r.stderr
        assert r.stderr.strip().count("\n") == 0 and "not a training checkpoint" in r.stderr


def test_the_runtime_never_imports_the_trainers():
    """The codec's packages stand below training: importing and using them loads no train/ module."""
    code = ("import sys, rnncodec, rnncodec.codec, rnncodec.container, rnncodec.entropy, rnncodec.image, "
            "rnncodec.tiles, rnncodec.models, rnncodec.layers, rnncodec.stored, rnncodec.zoo, rnncodec.batch, "
            "rnncodec.pillow_plugin; "
            "bad = sorted(m for m in sys.modules if m.startswith('rnncodec.train')); print(bad); sys.exit(bool(bad))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_training_with_randomly_stopped_blocks(data_dir, tmp_path):
    t = Trainer(config(data_dir, tmp_path / "s", steps=2, crop=48, stop_blocks=0.5), progress=False)
    x = t.train_src.batch(4, np.random.default_rng(0))
    active = t._random_stops(x)
    masks = [active(k, None) for k in range(1, t.unroll)]
    assert all((later <= earlier).all() for later, earlier in zip(masks[1:], masks))  # stopped stays stopped
    assert 0 < float(torch.cat(masks).mean()) < 1
    t.run()


def test_a_wider_tail_grows_from_a_trained_model_computing_what_it_did(data_dir, trained, tmp_path):
    """--tail-width with --init-from a narrower model: the same reconstructions before any step
    (the new channels read by nothing), then training moves the new weights."""
    narrow = torch.load(trained / "checkpoint.pt", weights_only=False)
    t = Trainer(config(data_dir, tmp_path / "w", steps=2, init_from=str(trained / "checkpoint.pt"),
                       model_overrides={"tail_width": 0.125}), progress=False)
    assert t.model.decoder.out.weight.shape[1] == 2 * narrow["model"]["decoder.out.weight"].shape[1]
    before = Trainer(config(data_dir, tmp_path / "n", steps=2, init_from=str(trained / "checkpoint.pt")), progress=False)
    x = t.val_batch[:2]
    t.model.eval()
    with torch.no_grad():
        wide, ref = t.model(x, 3)[1], before.model.eval()(x, 3)[1]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(wide, ref))
    out = t.model.decoder.out.weight.detach().clone()
    t.run()
    assert not torch.equal(t.model.decoder.out.weight[:, out.shape[1] // 2:], out[:, out.shape[1] // 2:])
    with pytest.raises(ModelError):  # a narrower tail cannot hold the wider model's weights
        Trainer(config(data_dir, tmp_path / "x", steps=1, init_from=str(tmp_path / "w" / "checkpoint.pt")), progress=False)

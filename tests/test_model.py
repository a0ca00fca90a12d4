"""The model family: every cell × framework codes 32 bits per 16×16 block per iteration."""
import itertools

import pytest
import torch

from rnncodec.config import CELLS, FRAMEWORKS, ModelConfig, preset
from rnncodec.entropy.arithmetic import build_context_model
from rnncodec.errors import ModelError
from rnncodec.layers import Binarizer
from rnncodec.layers.cells import ConvGRU, ConvLSTM, ResidualGRU
from rnncodec.models import RNNCodec, rnn_codec
from rnncodec.stored import StoredWeights, build_module, load_weights, save_weights
from rnncodec.zoo import load_image_model


@pytest.mark.parametrize("cell,framework", list(itertools.product(CELLS, FRAMEWORKS)))
def test_bits_per_iteration(cell, framework):
    torch.manual_seed(0)
    net = RNNCodec(preset("tiny", encoder_cell=cell, decoder_cell=cell, framework=framework)).eval()
    x = torch.rand(2, 3, 48, 32) - 0.5
    with torch.no_grad():
        bits, recons = net(x, 3)
        replay = list(net.decode(bits))
    assert len(bits) == 3
    for b, r, d in zip(bits, recons, replay):
        assert b.shape == (2, 32, 3, 2)  # 32 bits per 16×16 block: 0.125 bpp
        assert set(b.unique().tolist()) <= {-1.0, 1.0}
        assert r.shape == x.shape
        assert torch.equal(r, d)


@pytest.mark.parametrize("cell,bf16", [(c, False) for c in CELLS] + [("residual_gru", True)])
def test_layers_in_strips_compute_what_whole_layers_do(cell, bf16, monkeypatch):
    """Inference runs a large layer in strips of rows (issue 14's memory), through the encoder's
    strided layers and the decoder's, over several iterations (the strips' states carry their halo
    rows), here in an image whose block grid is odd both ways. The decoder replays the encoder's
    reconstruction exactly, and the strips compute what whole layers do: the same bits, and the
    same reconstruction but for the last bit of a float (vectorised and scalar elementwise loops
    round apart, and a strip moves where each runs)."""
    torch.manual_seed(0)
    net = RNNCodec(preset("tiny", encoder_cell=cell, decoder_cell=cell)).eval()
    x = torch.rand(1, 3, 16 * 9, 16 * 7) - 0.5
    runs = []
    for pixels in (1 << 30, 40, 7):  # whole; strips of several rows; the fewest rows a halo allows
        monkeypatch.setattr(rnn_codec, "STRIP_PIXELS", pixels)
        with torch.inference_mode():
            at, bits = net.begin(x), []
            for _ in range(3):
                b, at = net.step(x, at, bf16)
                bits.append(b)
            replay = list(net.decode(bits, bf16))
        assert torch.equal(replay[-1], at.recon)
        runs.append((torch.stack(bits), at.recon))
    assert isinstance(at.dec[-1], rnn_codec.Strips)  # the strips did run
    for bits, recon in runs[1:]:
        assert torch.equal(bits, runs[0][0])
        torch.testing.assert_close(recon, runs[0][1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_trains(cell):
    """A gradient step reaches every parameter: the straight-through binarizer passes gradients."""
    torch.manual_seed(0)
    net = RNNCodec(preset("tiny", encoder_cell=cell, decoder_cell=cell, framework="residual_scaling")).train()
    x = torch.rand(2, 3, 32, 32) - 0.5
    _, recons = net(x, 2)
    sum((x - r).abs().mean() for r in recons).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_binarizer_stochastic_in_training_sign_in_inference():
    torch.manual_seed(0)
    b = Binarizer(4, 8)
    x = torch.randn(64, 4, 4, 4)
    b.train()
    first, second = b(x), b(x)
    assert not torch.equal(first, second)  # stochastic
    assert set(first.unique().tolist()) <= {-1.0, 1.0}
    b.eval()
    assert torch.equal(b(x), b(x))
    assert torch.equal(b(x), torch.where(torch.tanh(b.conv(x)) >= 0, 1.0, -1.0))


def test_binarizer_sign_training_writes_the_test_bits_and_passes_gradients():
    torch.manual_seed(0)
    b = Binarizer(4, 8).train()
    b.stochastic = False
    x = torch.randn(16, 4, 4, 4)
    bits = b(x)
    assert torch.equal(bits.detach(), b.eval()(x))
    b.train()
    b(x).sum().backward()
    assert b.conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("cell, zeros", [(ConvGRU, 1), (ResidualGRU, 1), (ConvLSTM, 2)])
def test_first_step_without_a_state_is_exactly_a_step_from_zeros(cell, zeros):
    """The first step skips the hidden convolutions (their input is zero): it must change nothing,
    to the bit, or old files would decode to other pixels."""
    torch.manual_seed(0)
    net = cell(8, 16, 3, 3, stride=2).eval()
    x = torch.randn(2, 8, 12, 12)
    with torch.no_grad():
        h, state = net(x, None)
        h0, state0 = net(x, (torch.zeros(2, 16, 6, 6),) * zeros)
    assert torch.equal(h, h0) and all(torch.equal(a, b) for a, b in zip(state, state0))


def test_an_outer_bf16_autocast_reaches_the_layers():
    """`train --bf16` wraps the model in a bf16 autocast; the model must not switch it off inside."""
    torch.manual_seed(0)
    net = RNNCodec(preset("tiny")).eval()
    x = torch.rand(1, 3, 32, 32) - 0.5
    with torch.no_grad():
        plain = net(x, 2)[1][-1]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = net(x, 2)[1][-1]
    assert not torch.equal(plain, autocast)
    assert torch.allclose(plain, autocast.float(), atol=0.05)


def test_iteration_gain_model_scales_residuals_and_calibrates():
    torch.manual_seed(0)
    net = RNNCodec(preset("tiny", framework="iteration_gain")).eval()
    x = torch.rand(2, 3, 32, 32) - 0.5
    plain = RNNCodec(preset("tiny")).eval()
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if k != "log_gain"})
    # with unit gains it is the additive model
    assert all(torch.equal(a, b) for a, b in zip(net(x, 4)[1], plain(x, 4)[1]))
    gains = net.calibrate_gains(x)
    assert gains[0] == 1.0 and len(gains) == net.cfg.iterations
    bits, recons = net(x, 4)
    assert all(torch.allclose(r, d) for r, d in zip(recons, net.decode(bits)))  # the decoder replays the gains


def test_priming_changes_the_first_output_and_decodes_the_same():
    torch.manual_seed(0)
    primed = RNNCodec(preset("tiny", priming=2)).eval()
    plain = RNNCodec(preset("tiny")).eval()
    plain.load_state_dict(primed.state_dict())
    x = torch.rand(1, 3, 32, 32) - 0.5
    bits, recons = primed(x, 3)
    assert not torch.equal(recons[0], plain(x, 1)[1][0])
    assert all(torch.allclose(r, d) for r, d in zip(recons, primed.decode(bits)))


@pytest.mark.parametrize("weight, n, bf16, tol", [(1.0, 20000, False, 0.02), (0.1, 200000, True, 0.005)])
def test_binarizer_expectation_matches_tanh(weight, n, bf16, tol):
    """E[b] = tanh(Wx): the stochastic bits are unbiased, also where the model runs in bf16 (the
    noise is drawn in float32)."""
    torch.manual_seed(0)
    b = Binarizer(1, 1).train()
    with torch.no_grad():
        b.conv.weight.fill_(weight)
    x = torch.full((n, 1, 1, 1), 0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        mean = b(x).float().mean().item()
    assert mean == pytest.approx(torch.tanh(torch.tensor(0.5 * weight)).item(), abs=tol)


def test_paper_preset_widths():
    net = RNNCodec(preset("paper"))
    assert net.encoder.conv.out_channels == 64
    assert net.encoder.out_channels == 512
    assert net.decoder.out.in_channels == 32
    assert 20e6 < sum(p.numel() for p in net.parameters()) < 40e6


def test_config_round_trip_and_validation():
    cfg = preset("small", framework="oneshot", encoder_cell="lstm")
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError):
        ModelConfig(framework="nope")
    with pytest.raises(ValueError):
        preset("huge")


def test_stored_weights_of_another_kind_or_shape_are_model_errors(tmp_path):
    net = RNNCodec(preset("tiny"))
    path = tmp_path / "tiny.safetensors"
    save_weights(path, "image", net.cfg.to_json(), net.state_dict())
    stored = load_weights(path)
    assert load_image_model(path).model_id == stored.model_id
    with pytest.raises(ModelError, match="expected entropy model weights, got 'image'"):
        build_context_model(stored)
    misfit = StoredWeights("image", preset("fast").to_json(), stored.tensors, stored.model_id, {})
    with pytest.raises(ModelError, match="image weights do not fit their config"):
        build_module(misfit, "image", lambda config: RNNCodec(ModelConfig.from_json(config)))


def test_saved_weights_are_readable_by_others(tmp_path):
    """Weights are made to be shared (and shipped in the package): not the 0600 safetensors writes."""
    path = tmp_path / "tiny.safetensors"
    save_weights(path, "image", preset("tiny").to_json(), RNNCodec(preset("tiny")).state_dict())
    assert path.stat().st_mode & 0o777 == 0o644


def test_fields_added_later_leave_older_model_ids_alone():
    old = preset("small")
    assert "priming" not in old.to_json()  # as the first release stored it
    assert ModelConfig.from_json(old.to_json()) == old
    primed = preset("small", priming=2)
    assert '"priming": 2' in primed.to_json() and ModelConfig.from_json(primed.to_json()) == primed

"""The pipeline: bit-exact decoding, any size, every prefix, rate targeting, tiles."""
import warnings
import zlib
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
from conftest import block_grids, smooth_image

from rnncodec import codec, container
from rnncodec.backend import as_backend, load_backend
from rnncodec.codec import encode
from rnncodec.entropy import RawCoder
from rnncodec.errors import FormatError, ModelError, Note, OptionError
from rnncodec.quality import ms_ssim_rgb, psnr_rgb
from rnncodec.stored import save_weights
from rnncodec.zoo import load_image_model

# these files' encoders run the torch module: its decoder reproduces them exactly (engines differ by rounding)
decode = partial(codec.decode, engine="torch")


@pytest.mark.parametrize("shape", [(1, 1), (17, 33), (333, 517)])
def test_decoder_reproduces_encoder(tiny_model, shape):
    img = smooth_image(*shape)
    enc = encode(img, iterations=3, model=tiny_model, reconstruct=True)
    dec = decode(enc.data)
    assert dec.pixels.shape == shape + (3,)
    assert dec.iterations == 3
    assert np.array_equal(dec.pixels, enc.reconstruction)


def test_size_is_nominal_rate_plus_header(tiny_model):
    enc = encode(smooth_image(64, 96), iterations=4, model=tiny_model, coder=RawCoder())
    header, chunks = container.read(enc.data)
    bits_per_iter = 32 * (64 // 16) * (96 // 16)
    assert [len(p) for p, _ in chunks] == [1 + bits_per_iter // 8] * 4  # varint + packed bits
    assert len(enc.data) == len(header.to_bytes()) + 4 * (container.CHUNK_OVERHEAD + 1 + bits_per_iter // 8)
    assert len(header.to_bytes()) == 41


def test_the_container_knows_every_prefix(tiny_model):
    enc = encode(smooth_image(48, 64), iterations=4, model=tiny_model)
    header, chunks = container.read(enc.data)
    sizes = container.prefix_sizes(header, chunks)
    for k in range(1, 5):
        cut = container.truncate(header, chunks, k)
        assert len(cut) == sizes[k - 1]
        assert decode(cut).iterations == k
    assert sizes[-1] == len(enc.data)
    by_rate = encode(smooth_image(48, 64), bpp=sizes[1] * 8 / (48 * 64), model=tiny_model)
    assert by_rate.data == container.truncate(header, chunks, 2)


def test_every_chunk_prefix_decodes(tiny_model):
    img = smooth_image(40, 70)
    enc = encode(img, iterations=5, model=tiny_model)
    header, chunks = container.read(enc.data)
    for k in range(1, 6):
        prefix = container.write(header, chunks[:k])
        expected = encode(img, iterations=k, model=tiny_model, reconstruct=True).reconstruction
        assert np.array_equal(decode(prefix).pixels, expected)
        assert np.array_equal(decode(enc.data, iterations=k).pixels, expected)


def test_quality_improves_with_iterations_on_a_trained_model():
    """The packaged model: more iterations, smaller error."""
    img = smooth_image(64, 64, seed=3)
    data = encode(img, iterations=6).data
    errors = [np.abs(decode(data, k).pixels.astype(int) - img).mean() for k in (1, 6)]
    assert errors[1] < errors[0]


def test_bpp_target_keeps_longest_fitting_prefix(tiny_model):
    img = smooth_image(64, 64)
    full = encode(img, iterations=tiny_model.cfg.iterations, model=tiny_model)
    _, chunks = container.read(full.data)
    sizes = [len(container.write(container.read(full.data)[0], chunks[:k])) for k in range(1, len(chunks) + 1)]
    target = (sizes[2] + 1) * 8 / (64 * 64)
    enc = encode(img, bpp=target, model=tiny_model, adaptive=False)
    assert enc.iterations == 3
    assert len(enc.data) * 8 / (64 * 64) <= target
    assert container.read(enc.data)[0].iterations == 3


def test_a_budget_between_iterations_is_filled_by_a_partial_last_one():
    packaged = load_image_model()  # a trained model: its third iteration improves every block
    img = smooth_image(96, 128, seed=2)
    header, chunks = container.read(encode(img, model=packaged, iterations=3).data)
    sizes = container.prefix_sizes(header, chunks)
    budget = (sizes[1] + sizes[2]) / 2
    enc = encode(img, bpp=budget * 8 / (96 * 128), model=packaged, reconstruct=True, adaptive=False)
    header, chunks = container.read(enc.data)
    assert enc.iterations == 3 and header.blocks is not None  # the third codes some blocks only
    assert sizes[1] < len(enc.data) <= budget
    assert np.array_equal(decode(enc.data).pixels, enc.reconstruction)
    assert decode(container.truncate(header, chunks, 2)).iterations == 2


def test_tiled_image_decodes_exactly_and_seams_blend(tiny_model):
    img = smooth_image(100, 150)
    enc = encode(img, iterations=2, model=tiny_model, tile=64, overlap=16, reconstruct=True)
    header, _ = container.read(enc.data)
    assert (header.tile, header.overlap) == (64, 16)
    assert np.array_equal(decode(enc.data).pixels, enc.reconstruction)


def test_unknown_model_id_is_a_model_error(tiny_model, tmp_path, monkeypatch):
    data = encode(smooth_image(16, 16), iterations=1, model=tiny_model).data
    header, chunks = container.read(data)
    other = container.Header(0, b"\x01" * 8, bytes(8), header.width, header.height, header.tile, header.overlap, 1)
    with pytest.raises(ModelError, match="unknown image model id 0101010101010101"):
        decode(container.write(other, chunks))


def test_model_file_with_wrong_hash_is_refused(tiny_model, tmp_path, monkeypatch):
    """Weights whose metadata claims an id their tensors do not hash to are never used."""
    state = {k: v + 1 for k, v in tiny_model.net.state_dict().items()}
    path = tmp_path / "forged.safetensors"
    save_weights(path, "image", tiny_model.cfg.to_json(), state)
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    save_file(tensors, str(path), metadata={"kind": "image", "config": tiny_model.cfg.to_json(),
                                            "model_id": tiny_model.model_id.hex()})
    monkeypatch.setenv("RNNCODEC_MODEL_PATH", str(tmp_path))
    from rnncodec.zoo import clear_caches

    clear_caches()
    data = encode(smooth_image(16, 16), iterations=1, model=tiny_model).data
    with pytest.raises(ModelError, match="hash"):
        decode(data)


def test_crc_catches_a_flipped_payload_bit(tiny_model):
    data = bytearray(encode(smooth_image(32, 32), iterations=2, model=tiny_model).data)
    data[-3] ^= 0x10
    with pytest.raises(FormatError, match="chunk 2 CRC mismatch"):
        decode(bytes(data))


def _prefix_psnrs(img, data):
    header, chunks = container.read(data)
    psnrs = [psnr_rgb(img, decode(container.truncate(header, chunks, k)).pixels) for k in range(1, len(chunks) + 1)]
    return header, chunks, psnrs


def test_a_quality_target_stops_at_the_first_iteration_that_reaches_it(tiny_model):
    img = smooth_image(48, 64, seed=3)
    header, chunks, psnrs = _prefix_psnrs(img, encode(img, iterations=tiny_model.cfg.iterations, model=tiny_model).data)
    for target in sorted(psnrs)[1:4]:
        # one tile: judged exactly, stopped there
        enc = encode(img, model=tiny_model, target_psnr=target, adaptive=False, downscale=1)
        assert enc.iterations == next(k for k, p in enumerate(psnrs, 1) if p >= target)
        assert enc.data == container.truncate(header, chunks, enc.iterations)
    with pytest.warns(Note, match="out of reach"):
        assert encode(img, model=tiny_model, target_psnr=99.0).iterations == len(chunks)  # all it can give
    assert encode(img, model=tiny_model, target_ms_ssim=0.01).iterations == 1


def test_a_quality_target_over_several_tiles_is_judged_from_the_tiles(tiny_model):
    img = smooth_image(64, 96, seed=4)
    header, chunks, psnrs = _prefix_psnrs(img, encode(img, iterations=tiny_model.cfg.iterations, model=tiny_model, tile=48,
                                                                  overlap=16).data)
    target = sorted(psnrs)[2]
    enc = encode(img, model=tiny_model, tile=48, overlap=16, target_psnr=target, adaptive=False, downscale=1)
    k = next(k for k, p in enumerate(psnrs, 1) if p >= target)
    assert enc.iterations == k and len(enc.data) <= len(container.truncate(header, chunks, k))  # the last in part
    assert psnr_rgb(img, decode(enc.data).pixels) >= target


def test_a_target_over_tiles_that_meet_it_at_different_iterations_is_reached():
    """Whole iterations, the last in part, over tiles of which one meets the target long before the
    others (a flat half): that tile stops at its own count, and the image still reaches the target."""
    packaged = load_backend("onnx", None, "auto")
    img, tiling = _half_flat(64, 128), dict(tile=64, overlap=16)
    header, chunks, psnrs = _prefix_psnrs(img, encode(img, model=packaged, iterations=8, **tiling).data)
    target = (psnrs[3] + psnrs[4]) / 2  # five whole iterations, four of the busy half alone would not do
    with warnings.catch_warnings():
        warnings.simplefilter("error", Note)
        enc = encode(img, model=packaged, target_psnr=target, adaptive=False, downscale=1, **tiling)
    assert psnr_rgb(img, decode(enc.data).pixels) >= target
    assert len(enc.data) < len(container.truncate(header, chunks, 5))


@pytest.mark.parametrize("adaptive", [False, True])
def test_an_ms_ssim_target_over_tiles_that_meet_it_at_different_iterations_is_reached(adaptive):
    """The same with MS-SSIM, whose block distortions are linearised an iteration before the
    image's whole iterations: the flat tile stopped long before, and is taken at its last."""
    packaged = load_backend("onnx", None, "auto")
    img, tiling = _half_flat(64, 128), dict(tile=64, overlap=16)
    header, chunks = container.read(encode(img, model=packaged, iterations=8, **tiling).data)
    scores = [ms_ssim_rgb(img, decode(container.truncate(header, chunks, k)).pixels) for k in (4, 5)]
    target = sum(scores) / 2  # five whole iterations, as above
    with warnings.catch_warnings():
        warnings.simplefilter("error", Note)
        enc = encode(img, model=packaged, target_ms_ssim=target, adaptive=adaptive, downscale=1, **tiling)
    assert ms_ssim_rgb(img, decode(enc.data).pixels) >= target


def test_rate_options_exclude_each_other(tiny_model):
    with pytest.raises(ValueError, match="give one of"):
        encode(smooth_image(32, 32), model=tiny_model, bpp=0.5, target_psnr=30)
    with pytest.raises(ValueError, match="between 0 and 1"):
        encode(smooth_image(32, 32), model=tiny_model, target_ms_ssim=1.5)


class CountingBackend:
    """The torch backend, counting its steps, whether each ran the decoder, and its decoding steps: a
    backend is a public interface (backend.py), so a test can stand one in."""

    def __init__(self, model, precision: str = "fp32") -> None:
        self.inner = as_backend(model, precision)
        self.model_id, self.cfg, self.precision = self.inner.model_id, self.inner.cfg, self.inner.precision
        self.decoded: list[bool] = []
        self.decoding_steps = 0

    def begin(self, x):
        return self.inner.begin(x)

    def step(self, state, decode):
        self.decoded.append(decode)
        return self.inner.step(state, decode)

    def reconstruction(self, state):
        return self.inner.reconstruction(state)

    def decode_step(self, state, bits, mask):
        self.decoding_steps += 1
        return self.inner.decode_step(state, bits, mask)


def test_fixed_iterations_pay_for_no_first_pass_nor_the_last_decoder_step(tiny_model):
    """Fixed iterations: each iteration computed once, the last one's x̂ never looked at; the same
    file as the torch model gives directly."""
    img = smooth_image(48, 64, seed=4)
    backend = CountingBackend(tiny_model)
    assert encode(img, iterations=3, model=backend).data == encode(img, iterations=3, model=tiny_model,
                                                                    precision="fp32").data
    assert backend.decoded == [True, True, False]
    tiled = CountingBackend(tiny_model)
    encode(img, iterations=2, model=tiled, tile=32, overlap=16)
    assert tiled.decoded == [True, False] * 4  # 2×2 tiles


def test_a_chosen_rate_runs_the_model_once(tiny_model):
    """A chosen rate: one first pass of at most every iteration, all decoded; the counts are coded
    from its bits, with no model step."""
    img = smooth_image(48, 64, seed=3)
    n = tiny_model.cfg.iterations
    for rate in (dict(quality=60), dict(bpp=1.0), dict(target_psnr=20.0)):
        backend = CountingBackend(tiny_model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Note)
            encode(img, model=backend, downscale=1, **rate)
        assert 0 < len(backend.decoded) <= n and all(backend.decoded), rate


def test_a_first_pass_stops_where_the_goal_is_met():
    """The packaged model: at quality 0 the first pass, the only run of the model, stops at the
    first iteration that no block chooses, one after the file's; a target that one iteration of a
    one-tile image meets takes one step, the file being the first pass's."""
    img = smooth_image(64, 96, seed=0)
    low = CountingBackend(load_backend("onnx", None, "auto"))
    encoded = encode(img, model=low, quality=0, downscale=1)
    assert codec.decode(encoded.data).pixels.shape == img.shape
    assert len(low.decoded) == encoded.iterations + 1 < low.cfg.iterations  # the first iteration no block chose
    once = CountingBackend(load_backend("onnx", None, "auto"))
    encoded = encode(img, model=once, target_psnr=10, downscale=1)
    assert once.decoded == [True] and encoded.iterations == 1
    assert psnr_rgb(img, codec.decode(encoded.data).pixels) >= 10



@pytest.mark.parametrize("model", ["onnx", "torch"])
def test_a_target_is_checked_on_what_the_file_decodes_to(model):
    """A target met at k whole iterations, coded as k − 1 and a partial k-th: the file reaches it as
    decoded, and `reconstruct` gives what it decodes to; the model ran only the first pass, and
    checking the candidate decoded only its last iteration, from the first pass's state before it."""
    from rnncodec.quality import ms_ssim_rgb
    packaged = load_backend("onnx", None, "auto") if model == "onnx" else load_image_model()
    img = _half_flat(96, 128)
    header, chunks = container.read(encode(img, model=packaged, iterations=5, precision="fp32").data)
    q = [ms_ssim_rgb(img, decode(container.truncate(header, chunks, k), precision="fp32").pixels) for k in (3, 4)]
    target = q[0] + 0.3 * (q[1] - q[0])
    counted = CountingBackend(packaged)
    enc = encode(img, model=counted, target_ms_ssim=target, adaptive=False, downscale=1, precision="fp32",
                 reconstruct=True)
    assert enc.iterations == 4 and container.read(enc.data)[0].blocks is not None
    assert np.array_equal(codec.decode(enc.data, engine=model, precision="fp32").pixels, enc.reconstruction)
    assert ms_ssim_rgb(img, enc.reconstruction) >= target
    assert all(counted.decoded) and len(counted.decoded) <= 5
    checked = CountingBackend(packaged)
    assert encode(img, model=checked, target_ms_ssim=target, adaptive=False, downscale=1, precision="fp32").data == enc.data
    assert 1 <= checked.decoding_steps <= 2  # one candidate, or one and its second aim

@pytest.mark.parametrize("coder_name", ["entropy_coder", "integer_coder"])
@pytest.mark.parametrize("enc_precision,dec_precision", [("fp32", "bf16"), ("bf16", "fp32"), ("bf16", "bf16")])
def test_every_precision_round_trips(request, tiny_model, coder_name, enc_precision, dec_precision, monkeypatch):
    monkeypatch.setattr("rnncodec.precision.bf16_native", lambda: True)  # bf16 runs anywhere, only slower
    coder = request.getfixturevalue(coder_name)
    img = smooth_image(48, 64, seed=5)
    reference = encode(img, iterations=3, model=tiny_model, coder=coder, precision="fp32", reconstruct=True)
    enc = encode(img, iterations=3, model=tiny_model, coder=coder, precision=enc_precision, reconstruct=True)
    dec = decode(enc.data, precision=dec_precision)  # the entropy coder must not see the autocast: chunk CRCs pass
    assert dec.iterations == 3
    assert np.abs(dec.pixels.astype(int) - reference.reconstruction).mean() < 2.0  # bf16 rounding, no more
    if enc_precision == dec_precision:
        assert np.array_equal(dec.pixels, enc.reconstruction)


@pytest.mark.parametrize("written", ["fp32", "bf16"])
def test_auto_decodes_in_the_encoders_precision(tiny_model, integer_coder, monkeypatch, written):
    """A decoder in the encoder's arithmetic replays its reconstruction exactly; in the other it drifts."""
    monkeypatch.setattr("rnncodec.precision.bf16_native", lambda: True)
    enc = encode(smooth_image(48, 64, seed=6), iterations=3, model=tiny_model, coder=integer_coder, precision=written,
                 reconstruct=True)
    assert container.read(enc.data)[0].precision == written
    assert np.array_equal(decode(enc.data).pixels, enc.reconstruction)


def test_bf16_falls_back_to_fp32_where_the_cpu_lacks_it(tiny_model, monkeypatch):
    from rnncodec.errors import Note

    monkeypatch.setattr("rnncodec.precision.bf16_native", lambda: False)
    img = smooth_image(32, 32)
    with pytest.warns(Note, match="no native bf16"):
        forced = encode(img, iterations=2, model=tiny_model, precision="bf16")
    assert forced.data == encode(img, iterations=2, model=tiny_model, precision="fp32").data
    assert encode(img, iterations=2, model=tiny_model, precision="auto").data == forced.data


def test_edges_of_rate_control(tiny_model):
    img = smooth_image(48, 64, seed=3)
    with pytest.raises(OptionError, match="below what one iteration costs for this image, even coded at 1/4 size"):
        encode(img, model=tiny_model, bpp=0.001)  # no silent file over the budget, at any size
    with pytest.raises(OptionError, match="positive"):
        encode(img, model=tiny_model, target_psnr=-3)
    with pytest.warns(Note, match=r"out of reach: stopped at 6 iterations at"):
        encode(img, model=tiny_model, target_psnr=99.0)
    with pytest.warns(Note, match="out of reach"):
        encode(smooth_image(64, 96), model=tiny_model, tile=48, overlap=16, target_ms_ssim=0.9999)


def _half_flat(h: int, w: int) -> np.ndarray:
    img = smooth_image(h, w, seed=8)
    img[:, : w // 2] = 128  # a flat half the target is met on early, and a busy half
    return img


@pytest.mark.parametrize("coder_name", ["raw", "entropy_coder", "integer_coder"])
@pytest.mark.parametrize("tile", [1024, 48])
def test_adaptive_files_round_trip_at_every_prefix(request, coder_name, tile):
    packaged = load_image_model()  # a trained model: its counts beat the target alone's file, which is kept
    coder = RawCoder() if coder_name == "raw" else request.getfixturevalue(coder_name)
    img = _half_flat(64, 96)
    full = encode(img, model=packaged, coder=coder, tile=tile, overlap=16, iterations=4).data
    header, chunks, psnrs = _prefix_psnrs(img, full)  # between 2 and 3 whole iterations: on neither's edge
    enc = encode(img, model=packaged, coder=coder, tile=tile, overlap=16, target_psnr=(psnrs[1] + psnrs[2]) / 2,
                 adaptive=True, reconstruct=True, precision="fp32")
    header, chunks = container.read(enc.data)
    assert enc.data[4] == container.VERSION_ADAPTIVE and header.blocks is not None
    assert np.array_equal(decode(enc.data, precision="fp32").pixels, enc.reconstruction)
    for k in range(1, len(chunks) + 1):
        assert decode(container.truncate(header, chunks, k), precision="fp32").iterations == k


def test_adaptive_blocks_stop_where_the_image_is_easy():
    packaged = load_image_model()  # a trained model: a random one meets no target anywhere
    img = _half_flat(64, 128)
    enc = encode(img, model=packaged, target_psnr=32.0, adaptive=True, precision="fp32")
    header, chunks = container.read(enc.data)
    counts = container.block_counts(header, [(4, 8)])[0]
    assert counts[:, :2].mean() < counts[:, 6:].mean()  # the flat half stops sooner
    assert psnr_rgb(img, decode(enc.data).pixels) >= 32.0  # and the whole meets the target
    plain = encode(img, model=packaged, iterations=enc.iterations, precision="fp32")
    assert len(enc.data) < len(plain.data)  # stopped blocks cost no bits


def test_adaptive_ms_ssim_spends_fewer_block_iterations_than_whole_ones():
    """An MS-SSIM target (five scales: sides of 161 px and more) met by counts that the search
    moved off uniform: fewer block-iterations and bytes than the first whole iteration reaching it."""
    from rnncodec.quality import ms_ssim_rgb
    packaged = load_image_model()
    img = smooth_image(176, 192, seed=8)
    img[:, :96] = 128
    full = encode(img, model=packaged, iterations=5, precision="fp32").data
    header, chunks = container.read(full)
    q = [ms_ssim_rgb(img, decode(container.truncate(header, chunks, k)).pixels) for k in range(1, 6)]
    target = (q[1] + q[2]) / 2
    enc = encode(img, model=packaged, target_ms_ssim=target, adaptive=True, precision="fp32")
    counts = container.block_counts(container.read(enc.data)[0], [(11, 12)])[0]
    assert ms_ssim_rgb(img, decode(enc.data).pixels) >= target
    assert counts.sum() < 3 * counts.size and len(enc.data) < len(container.truncate(header, chunks, 3))


@pytest.mark.parametrize("metric", ["psnr", "ms_ssim"])
def test_the_last_iteration_codes_only_the_blocks_the_target_needs(metric):
    from rnncodec.quality import ms_ssim_rgb
    packaged = load_image_model()  # a trained model: its iterations' gains are uneven over the blocks
    img = _half_flat(96, 128)
    measure = psnr_rgb if metric == "psnr" else ms_ssim_rgb
    full = encode(img, model=packaged, iterations=4, precision="fp32").data
    header, chunks = container.read(full)
    q = [measure(img, decode(container.truncate(header, chunks, k)).pixels) for k in (2, 3)]
    target = q[0] + 0.3 * (q[1] - q[0])  # between the 2nd and the 3rd whole iteration
    enc = encode(img, model=packaged, precision="fp32", reconstruct=True, adaptive=False, **{f"target_{metric}": target})
    header, chunks = container.read(enc.data)
    got = measure(img, decode(enc.data, precision="fp32").pixels)
    assert enc.iterations == 3 and header.blocks is not None
    assert target <= got < q[1]  # it lands above the target, short of the whole third iteration
    assert len(enc.data) < len(container.truncate(*container.read(full), 3))
    assert np.array_equal(decode(enc.data, precision="fp32").pixels, enc.reconstruction)
    assert [decode(container.truncate(header, chunks, k)).iterations for k in (1, 2, 3)] == [1, 2, 3]


@pytest.mark.parametrize("metric", ["psnr", "ms_ssim"])
def test_adaptive_meets_its_target_for_no_more_than_whole_iterations(metric):
    """Whatever the counts, the file meets a reachable target, and is never larger than the first
    prefix of whole iterations that meets it (the first pass's fallback)."""
    from rnncodec.quality import ms_ssim_rgb
    packaged = load_image_model()
    img = _half_flat(64, 128)
    measure = psnr_rgb if metric == "psnr" else ms_ssim_rgb
    header, chunks = container.read(encode(img, model=packaged, iterations=6, precision="fp32").data)
    q = [measure(img, decode(container.truncate(header, chunks, k), precision="fp32").pixels) for k in range(1, 7)]
    for target in (q[1] + 0.2 * (q[2] - q[1]), q[3] + 0.7 * (q[4] - q[3])):
        with warnings.catch_warnings():
            warnings.simplefilter("error", Note)
            enc = encode(img, model=packaged, precision="fp32", downscale=1, **{f"target_{metric}": target})
        whole = container.truncate(header, chunks, next(k for k, v in enumerate(q, 1) if v >= target))
        assert measure(img, decode(enc.data, precision="fp32").pixels) >= target and len(enc.data) <= len(whole)


def test_tiled_images_get_adaptive_counts_and_partial_iterations():
    """Over several tiles, one λ for all: a target or a budget gives the blocks of every tile their
    own counts, the file meets it, and it round-trips at every prefix."""
    packaged = load_image_model()  # a trained model: each iteration improves the image
    img = _half_flat(64, 96)
    tiling = dict(tile=48, overlap=16, precision="fp32")
    header, chunks, psnrs = _prefix_psnrs(img, encode(img, model=packaged, iterations=4, **tiling).data)
    sizes = container.prefix_sizes(header, chunks)
    for rate in (dict(target_psnr=(psnrs[1] + psnrs[2]) / 2), dict(bpp=(sizes[1] + sizes[2]) / 2 * 8 / img[..., 0].size)):
        enc = encode(img, model=packaged, reconstruct=True, downscale=1, **tiling, **rate)
        h, c = container.read(enc.data)
        counts = np.concatenate([x.ravel() for x in container.block_counts(h, block_grids(h))])
        assert h.blocks is not None and counts.min() < counts.max()
        assert np.array_equal(decode(enc.data, precision="fp32").pixels, enc.reconstruction)
        assert [decode(container.truncate(h, c, k)).iterations for k in range(1, len(c) + 1)] == list(range(1, len(c) + 1))
        if "bpp" in rate:
            assert sizes[1] < len(enc.data) <= (sizes[1] + sizes[2]) / 2
        else:
            assert psnr_rgb(img, enc.reconstruction) >= rate["target_psnr"]


def test_adaptive_needs_a_target_and_corrupt_counts_are_refused(tiny_model):
    with pytest.raises(OptionError, match="need a quality target"):
        encode(smooth_image(32, 32), model=tiny_model, iterations=2, adaptive=True)
    with pytest.warns(Note, match="out of reach"):
        enc = encode(_half_flat(32, 64), model=tiny_model, target_psnr=40.0, adaptive=True)
    header, chunks = container.read(enc.data)
    bad = container.write(replace(header, blocks=zlib.compress(bytes(8))), chunks)  # counts of 0
    with pytest.raises(FormatError, match="block iteration counts"):
        decode(bad)


def test_quality_stops_each_block_where_more_stops_paying(integer_coder):
    """`quality`: one rate–distortion slope for every block. The flat half stops sooner than the
    busy one, the file decodes to the encoder's reconstruction, a higher quality buys a larger and
    better file, and stopped blocks cost less than whole iterations as far."""
    packaged = load_image_model()
    img = _half_flat(64, 128)
    low, high = (encode(img, model=packaged, coder=integer_coder, quality=q, reconstruct=True, precision="fp32")
                 for q in (20, 60))
    counts = container.block_counts(container.read(high.data)[0], [(4, 8)])[0]
    assert counts[:, :4].mean() < counts[:, 4:].mean()
    assert len(high.data) < len(encode(img, model=packaged, coder=integer_coder, iterations=high.iterations).data)
    for enc in (low, high):
        assert np.array_equal(decode(enc.data, precision="fp32").pixels, enc.reconstruction)
    assert len(low.data) < len(high.data) and psnr_rgb(img, low.reconstruction) < psnr_rgb(img, high.reconstruction)


def test_quality_buys_size_in_order_and_the_same_bytes_each_time(integer_coder):
    """`quality`: a higher quality never gives a smaller file on the packaged model, and one quality
    gives the same bytes twice."""
    packaged = load_image_model()
    img = _half_flat(48, 64)
    sizes = [len(encode(img, model=packaged, coder=integer_coder, quality=q, precision="fp32").data)
             for q in (0, 20, 40, 60, 80, 100)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    again = encode(img, model=packaged, coder=integer_coder, quality=40, precision="fp32").data
    assert len(again) == sizes[2] and again == encode(img, model=packaged, coder=integer_coder, quality=40,
                                                      precision="fp32").data


def test_quality_over_tiles_round_trips_at_every_prefix(tiny_model, integer_coder):
    img = smooth_image(64, 96, seed=5)
    enc = encode(img, model=tiny_model, coder=integer_coder, tile=48, overlap=16, quality=90, reconstruct=True)
    header, chunks = container.read(enc.data)
    grids = block_grids(header)
    assert header.blocks is not None and len(container.block_counts(header, grids)) == len(grids) > 1
    assert np.array_equal(decode(enc.data).pixels, enc.reconstruction)
    for k in range(1, len(chunks) + 1):
        assert decode(container.truncate(header, chunks, k)).iterations == k


def test_edges_of_quality(tiny_model):
    img = smooth_image(32, 32)
    for bad, match in (({"quality": 101}, "between 0 and 100"), ({"quality": -1}, "between 0 and 100"),
                       ({"quality": 50, "adaptive": False}, "adaptive by definition"),
                       ({"quality": 50, "iterations": 2}, "give one of")):
        with pytest.raises(OptionError, match=match):
            encode(img, model=tiny_model, **bad)


def test_canvas_finishes_rows_as_they_complete_with_the_same_pixels():
    from rnncodec.tiles import Canvas, plan_tiles

    rng = np.random.default_rng(0)
    h, w, overlap = 400, 200, 16
    boxes = plan_tiles(h, w, 64, overlap)
    tiles = [rng.random((*b.shape, 3), dtype=np.float32) - 0.5 for b in boxes]
    streamed, whole = Canvas(h, w, overlap), Canvas(h, w, overlap)
    peak = 0
    for i, (box, t) in enumerate(zip(boxes, tiles)):
        streamed.add(box, t)
        whole.add(box, t)
        if i + 1 < len(boxes) and boxes[i + 1].y0 != box.y0:
            streamed.finish(boxes[i + 1].y0)
        peak = max(peak, len(streamed.sum))
    assert np.array_equal(streamed.result(), whole.result())
    assert peak <= 64 + 4 * overlap  # floats for about a row of tiles, not the image
    with pytest.raises(ValueError, match="finished"):
        streamed.add(boxes[0], tiles[0])


def test_a_downscaled_file_decodes_at_full_size_at_every_prefix(tiny_model):
    rgba = np.dstack([smooth_image(37, 70, seed=5), np.linspace(0, 255, 37 * 70).reshape(37, 70).astype(np.uint8)])
    enc = encode(rgba, iterations=3, model=tiny_model, downscale=2, reconstruct=True)
    header, chunks = container.read(enc.data)
    assert (header.width, header.height) == (35, 19) and header.display_size == (70, 37)
    full = decode(enc.data)
    assert np.array_equal(full.pixels, enc.reconstruction) and np.array_equal(full.alpha, rgba[..., 3])  # alpha stays lossless
    for k in (1, 2):
        prefix = decode(container.truncate(header, chunks, k))
        assert prefix.pixels.shape == (37, 70, 3) and np.array_equal(prefix.pixels, decode(enc.data, k).pixels)


def test_a_budget_below_one_full_size_iteration_codes_at_a_smaller_size(tiny_model):
    img = smooth_image(64, 96, seed=6)
    one = len(encode(img, iterations=1, model=tiny_model).data) * 8 / img[..., 0].size
    enc = encode(img, bpp=0.6 * one, model=tiny_model)
    header, _ = container.read(enc.data)
    assert len(enc.data) * 8 / img[..., 0].size <= 0.6 * one and header.display_size == (96, 64) and header.width < 96
    assert decode(enc.data).pixels.shape == img.shape
    # just above one iteration, a smaller size's several look better than one and a part; at 1.5, full size
    assert [container.read(encode(img, bpp=r * one, model=tiny_model).data)[0].width for r in (1.1, 1.5)] == [48, 96]
    with pytest.raises(OptionError, match=r"costs for this image \(0"):  # only the size asked for
        encode(img, bpp=0.6 * one, model=tiny_model, downscale=1)


def test_a_target_that_one_full_size_iteration_passes_lands_at_a_smaller_size():
    packaged = load_image_model()  # a trained model: a random one meets no target anywhere
    img = smooth_image(96, 128, seed=8)
    whole = encode(img, iterations=1, model=packaged)
    target = psnr_rgb(img, decode(whole.data).pixels) - 3
    enc = encode(img, target_psnr=target, model=packaged, adaptive=False)
    assert container.read(enc.data)[0].width < 128 and len(enc.data) < len(whole.data)
    assert target <= psnr_rgb(img, decode(enc.data).pixels) < target + 1.5
    assert encode(img, target_psnr=target, model=packaged, adaptive=False, downscale=1).data == whole.data


def test_edges_of_downscaling(tiny_model):
    img = smooth_image(64, 96, seed=3)
    with pytest.raises(OptionError, match="downscale is one of 1, 2, 4"):
        encode(img, model=tiny_model, iterations=1, downscale=3)
    enc = encode(img, model=tiny_model, tile=16, overlap=0, target_psnr=5, downscale=2)  # judged as shown, upscaled
    assert container.read(enc.data)[0].width == 48 and psnr_rgb(img, decode(enc.data).pixels) >= 5

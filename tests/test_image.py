"""Input images: every Pillow mode becomes RGB or is refused clearly; orientation and ICC are kept."""
import io
import struct

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

from rnncodec import compress, decompress
from rnncodec.errors import ImageError, Note
from rnncodec.image import from_pil, pad_to_multiple, read_image


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "CMYK", "I;16", "I"])
def test_modes_become_rgb(mode, recwarn):
    src = Image.fromarray(smooth_image(8, 8)).convert("L" if mode.startswith("I") else mode)
    if mode.startswith("I"):
        src = Image.fromarray(np.asarray(src).astype(np.uint16) * 257)
        assert src.mode == "I;16"
        if mode == "I":
            src = src.convert("I")
    rgb = from_pil(src)
    assert rgb.pixels.shape == (8, 8, 3) and rgb.pixels.dtype == np.uint8
    notes = [str(w.message) for w in recwarn if issubclass(w.category, Note)]
    if mode.startswith("I"):
        assert np.array_equal(rgb.pixels[..., 0], np.asarray(Image.fromarray(smooth_image(8, 8)).convert("L")))
        assert any("8 bits" in n for n in notes)
    else:
        assert not notes


def rgba_image(h: int = 24, w: int = 40) -> Image.Image:
    """Colour with an alpha plane that has all of what real ones have: a transparent border, a
    hard edge, a smooth ramp and an opaque middle."""
    alpha = np.zeros((h, w), np.uint8)
    alpha[2:-2, 2:-2] = np.linspace(0, 255, w - 4, dtype=np.uint8)[None]
    alpha[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] = 255
    return Image.fromarray(np.dstack([smooth_image(h, w), alpha]), "RGBA")


def test_opaque_alpha_is_dropped():
    rgb = from_pil(Image.fromarray(smooth_image(8, 8)).convert("RGBA"))
    assert rgb.pixels.shape == (8, 8, 3) and rgb.alpha is None


def test_transparency_becomes_an_alpha_plane_in_every_mode():
    rgba = rgba_image()
    expected = np.asarray(rgba.getchannel("A"))
    for im in (rgba, rgba.convert("LA"), rgba.convert("PA")):
        assert np.array_equal(from_pil(im).alpha, expected), im.mode
    keyed = Image.fromarray(smooth_image(8, 8))  # a PNG tRNS colour key
    keyed.info["transparency"] = tuple(int(v) for v in smooth_image(8, 8)[3, 5])
    assert from_pil(keyed).alpha[3, 5] == 0 and from_pil(keyed).alpha.sum() == 255 * 63
    grey16 = Image.fromarray(np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000)
    grey16.info["transparency"] = 8000
    with pytest.warns(Note, match="8 bits"):
        plane = from_pil(grey16).alpha
    assert plane.tolist() == np.where(np.arange(16) == 2, 0, 255).reshape(4, 4).tolist()


def test_fully_transparent_pixels_take_the_background():
    rgba = rgba_image()
    alpha = np.asarray(rgba.getchannel("A"))
    rgb = from_pil(rgba, background="black")
    assert (rgb.pixels[alpha == 0] == 0).all()  # invisible: a flat colour is cheaper to code
    assert np.array_equal(rgb.pixels[alpha > 0], np.asarray(rgba.convert("RGB"))[alpha > 0])


def test_alpha_drop_flattens_onto_the_background():
    rgba = rgba_image()
    for background in ("white", "#102030", (200, 0, 0)):
        flat = from_pil(rgba, alpha="drop", background=background)
        bg = Image.new("RGBA", rgba.size, background if isinstance(background, str) else (*background, 255))
        assert flat.alpha is None
        np.testing.assert_allclose(flat.pixels, np.asarray(Image.alpha_composite(bg, rgba).convert("RGB")), atol=1)
    with pytest.raises(ValueError, match="unknown color"):
        from_pil(rgba, alpha="drop", background="no-such-colour")
    with pytest.raises(ValueError, match="alpha must be"):
        from_pil(rgba, alpha="premultiply")


def test_alpha_survives_a_round_trip_and_every_prefix(tiny_model):
    from rnncodec import container

    rgba = rgba_image()
    data = compress(rgba, iterations=3, model=tiny_model)
    header, chunks = container.read(data)
    for k in (1, 3):
        out = decompress(container.truncate(header, chunks, k))
        assert out.mode == "RGBA" and np.array_equal(np.asarray(out.getchannel("A")), np.asarray(rgba.getchannel("A")))
    flat = decompress(compress(rgba, iterations=1, model=tiny_model, alpha="drop"))
    assert flat.mode == "RGB"


def test_float_images_refused():
    with pytest.raises(ImageError, match="floating-point"):
        from_pil(Image.new("F", (4, 4)))


def test_exif_orientation_applied(tmp_path):
    img = Image.fromarray(smooth_image(10, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    path = tmp_path / "o.jpg"
    img.save(path, exif=exif, quality=95)
    assert read_image(path).pixels.shape == (20, 10, 3)


def test_icc_profile_survives_a_round_trip(tiny_model):
    img = Image.fromarray(smooth_image(16, 16))
    img.info["icc_profile"] = b"fake-icc-profile-bytes"
    out = decompress(compress(img, iterations=1, model=tiny_model))
    assert out.info["icc_profile"] == b"fake-icc-profile-bytes"


def test_unreadable_inputs(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    for name in ("empty.png", "text.png", "missing.png"):
        with pytest.raises(ImageError):
            read_image(tmp_path / name)
    with pytest.raises(ImageError, match="directory"):
        read_image(tmp_path)


def test_truncated_png_is_refused(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(smooth_image(64, 64)).save(buf, format="PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[:200])
    with pytest.raises(ImageError):
        read_image(tmp_path / "cut.png")


def test_pixel_cap(tmp_path):
    Image.fromarray(smooth_image(64, 64)).save(tmp_path / "big.png")
    pillows = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError, match="pixel cap of 1000"):
        read_image(tmp_path / "big.png", max_pixels=1000)
    assert Image.MAX_IMAGE_PIXELS == pillows  # a library leaves Pillow's global alone


def test_animated_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(Note, match="2 frames or layers: only the image as opened"):
        px = read_image(tmp_path / "a.gif").pixels
    assert abs(int(px.mean()) - 10) < 3


def _psd(layers: int, side: int = 4) -> bytes:
    """A minimal RGB Photoshop file with `layers` layers, all black (Pillow reads PSD, never writes it)."""
    plane = bytes(side * side)
    channel = struct.pack(">H", 0) + plane  # raw, not RLE
    record = (struct.pack(">4iH", 0, 0, side, side, 3) + b"".join(struct.pack(">hI", c, len(channel)) for c in range(3))
              + b"8BIMnorm" + bytes([255, 0, 0, 0]) + struct.pack(">I", 0))  # blend mode, opacity…, no extra data
    info = struct.pack(">h", layers) + record * layers + channel * 3 * layers
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, side, side, 8, 3)  # version, channels, h, w, depth, RGB
    return (header + struct.pack(">II", 0, 0) + struct.pack(">II", len(info) + 4, len(info)) + info
            + struct.pack(">H", 0) + plane * 3)


def test_layered_psd_codes_its_composite(tmp_path):
    """A PSD's frames are its layers, numbered from 1: a seek to 0 would fail."""
    from PIL import PsdImagePlugin

    psd = tmp_path / "two_layers.psd"
    psd.write_bytes(_psd(layers=2))
    with Image.open(psd) as im:
        assert isinstance(im, PsdImagePlugin.PsdImageFile) and im.n_frames == 2
    with pytest.warns(Note, match="layers"):
        assert read_image(psd).pixels.shape[2] == 3


def test_pad_to_multiple_replicates_edges():
    a = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    p = pad_to_multiple(a, 16)
    assert p.shape == (16, 16, 3)
    assert np.array_equal(p[:2, :3], a) and np.array_equal(p[15, 15], a[1, 2])

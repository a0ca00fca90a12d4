"""The comparison page: `rnncodec compare` and `eval --html` through a subprocess, their files and
real rates, and the page itself in a real headless Chromium (Debian's `chromium`, driven by Playwright)."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

from rnncodec import container
from rnncodec.eval.codecs import available
from rnncodec.eval.compare import match_rate, quality_grid

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; .ci/run installs it when missing
SHOWN = "[...document.images].every((im) => im.complete && im.naturalWidth > 0)"


def rnncodec(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rnncodec.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)


def page_data(index: Path) -> dict:
    """The page's one JSON blob."""
    return json.loads(re.search(r'<script type="application/json" id="page-data">(.*?)</script>', index.read_text(),
                                re.S).group(1))


def save_image(path: Path, h: int, w: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(smooth_image(h, w, seed)).save(path)
    return path


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> Path:
    """`rnncodec compare` of a 96×64 image at 1 and 2 iterations, with every available codec."""
    d = tmp_path_factory.mktemp("compare")
    image = save_image(d / "photo.png", 64, 96)
    r = rnncodec("compare", image, "-o", d / "page", "--iterations", "1,2", "--jobs", "1")
    assert r.returncode == 0, r.stderr
    return d / "page" / "index.html"


def test_compare_writes_the_page_and_real_files(compared):
    data = page_data(compared)
    assert data["codecs"] == ["rnncodec", *available()]
    (entry,) = data["images"]
    assert (entry["width"], entry["height"]) == (96, 64)
    assert [r["iterations"] for r in entry["rates"]] == [1, 2]
    assert all((compared.parent / p["src"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in entry["plots"])
    for rate in entry["rates"]:
        assert set(rate["pictures"]) == set(data["codecs"])
        for name, pic in rate["pictures"].items():
            coded = (compared.parent / pic["file"]).read_bytes()
            assert pic["bytes"] == len(coded) and pic["bpp"] == len(coded) * 8 / (96 * 64)  # real: the file's size
            assert Image.open(compared.parent / pic["src"]).size == (96, 64)
            assert 0 < pic["metrics"]["ms-ssim-rgb"] <= 1 and pic["metrics"]["psnr-rgb"] > 10
            if name != "rnncodec":  # matched: no larger than rnncodec's file, unless its lowest quality is
                assert pic["bpp"] <= rate["bpp"] or pic["quality"] == quality_grid(available()[name])[0]
        header, chunks = container.read((compared.parent / rate["pictures"]["rnncodec"]["file"]).read_bytes())
        assert header.iterations == len(chunks) == rate["iterations"]
        assert rate["bpp"] == rate["pictures"]["rnncodec"]["bpp"]


def test_compare_refuses_an_existing_page(compared):
    r = rnncodec("compare", compared.parent.parent / "photo.png", "-o", compared.parent, "--iterations", "1")
    assert r.returncode == 6 and "exists (use --force" in r.stderr


def test_match_rate_takes_the_largest_quality_that_fits():
    pixels = smooth_image(64, 96)
    jpeg = available()["jpeg"]
    quality, data = match_rate(jpeg, pixels, 2.0)
    assert data == jpeg.encode(pixels, quality)
    assert len(data) * 8 / pixels[..., 0].size <= 2.0 < len(jpeg.encode(pixels, quality + 1)) * 8 / pixels[..., 0].size


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module's page checks."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing: install Debian's chromium package (.ci/run does) to test the page in a browser")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM))
        yield b
        b.close()


def check_page(browser, index: Path, screenshot: Path):
    """Load the page as a user opens the file, fail on any console or page error or failed load,
    and check that the pictures show and the controls work; returns the page data."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"failed to load {r.url}"))
    page.goto(index.as_uri())
    page.wait_for_function(SHOWN)
    page.screenshot(path=screenshot)
    shot = np.asarray(Image.open(io.BytesIO(page.locator("#frame").screenshot())).convert("L"), float)
    assert shot.std() > 5, "the pictures look blank"

    before = page.get_attribute("#right-img", "src")
    page.locator("#rates button").first.click()
    assert page.get_attribute("#right-img", "src") != before  # the rate choice switches the pictures
    assert page.locator(".card img").first.get_attribute("src").endswith("original.png")
    page.wait_for_function(SHOWN)
    steps = page.locator("#progression figure")  # rnncodec's file as it arrives: one picture per rate
    assert steps.count() == len(page.locator("#rates button").all())
    assert "first " in steps.first.inner_text() and " B" in steps.first.inner_text()
    steps.last.click()  # a step picks its rate
    assert page.get_attribute("#rates button >> nth=-1", "aria-pressed") == "true"
    page.locator("#rates button").first.click()

    box = page.locator("#stage").bounding_box()
    frame = page.locator("#frame").bounding_box()
    page.mouse.move(frame["x"] + frame["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(frame["x"] + frame["width"] / 4, box["y"] + box["height"] / 2, steps=4)
    page.mouse.up()
    assert float(page.input_value("#split")) == pytest.approx(25, abs=2)  # the drag moved the split
    assert "75" in page.eval_on_selector("#left-img", "im => im.style.clipPath")

    page.select_option("#right", label="original")
    assert page.get_attribute("#right-img", "src").endswith("original.png")
    page.locator("#zoom button[data-zoom='2']").click()
    assert page.eval_on_selector("#left-img", "im => getComputedStyle(im).imageRendering") == "pixelated"
    width = page.eval_on_selector("#frame", "f => f.offsetWidth")
    assert width == 2 * page.eval_on_selector("#left-img", "im => im.naturalWidth")
    page.wait_for_function(SHOWN)
    assert errors == []
    page.close()


def test_page_in_chromium(browser, compared, tmp_path):
    check_page(browser, compared, tmp_path / "page.png")
    assert Image.open(tmp_path / "page.png").size == (1200, 900)


def test_eval_html_page_in_chromium(browser, tmp_path):
    for seed, (h, w) in enumerate(((48, 64), (64, 96))):
        save_image(tmp_path / "images" / f"img{seed}.png", h, w, seed)
    out = tmp_path / "results"
    r = rnncodec("eval", tmp_path / "images", "-o", out, "--codecs", "rnncodec,jpeg,webp", "--jobs", "1", "--html",
                 "--iterations", "1,2")
    assert r.returncode == 0, r.stderr
    index = out / "html" / "index.html"
    data = page_data(index)
    assert [im["name"] for im in data["images"]] == ["img0", "img1"] and len(data["plots"]) == 2
    check_page(browser, index, tmp_path / "page.png")
    page = browser.new_page()  # the image chooser switches to the second image
    page.goto(index.as_uri())
    page.select_option("#image", index=1)
    assert "img1/" in page.get_attribute("#left-img", "src")
    page.close()

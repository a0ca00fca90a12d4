"""The JavaScript decoder (web/) in headless Chromium, served from a loopback HTTP server that the
test starts (web/serve.py): every conformance vector's bits exactly, its pixels within the
tolerance of another engine, frames after each complete iteration of a stream that arrives piece
by piece, and errors, never a hang, for cut or corrupt streams. Needs web/'s npm packages
(`npm ci --prefix web`); skips only where Chromium or Playwright is missing."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pytest
from conftest import entropy_bits, smooth_image
from PIL import Image

from rnncodec import container
from rnncodec.codec import decode
from rnncodec.zoo import MODEL_PATH_ENV

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
VECTORS = ROOT / "tests" / "vectors"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; .ci/run installs it when missing
NAMES = sorted(p.stem for p in VECTORS.glob("*.rnc"))
PORTABLE = [n for n in NAMES if container.read((VECTORS / f"{n}.rnc").read_bytes())[0].coder_id != 1]
WAIT = 30.0  # seconds a gated stream waits for the page's frame before it goes on (a bound, not a timing)
# the most an 8-bit value may differ from Python's decode: what docs/RESULTS.md ("Portability")
# measures for the float image model on another machine or engine
TOLERANCE = 1
PAGE_ERRORS: list[str] = []  # uncaught errors in the page: none may occur

spec = importlib.util.spec_from_file_location("web_serve", WEB / "serve.py")
web_serve = importlib.util.module_from_spec(spec)
spec.loader.exec_module(web_serve)


class GatedHandler(web_serve.Handler):
    """Adds /gated/NAME?id=ID: the file in small pieces, each chunk held back until the page has
    shown the frame of the one before (it reports at /frame?id=ID&n=N). A decoder that shows
    nothing before the end gets the rest of the file only after WAIT, and the test sees that."""

    frames: dict[str, int] = {}
    shown = threading.Condition()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/frame":
            with self.shown:
                self.frames[query["id"]] = int(query["n"])
                self.shown.notify_all()
            self.send_response(204)
            self.end_headers()
        elif url.path.startswith("/gated/"):
            self.gated((self.routes["/files/"] / unquote(url.path.removeprefix("/gated/"))).read_bytes(), query["id"])
        else:
            super().do_GET()

    def gated(self, data: bytes, stream: str) -> None:
        header, chunks = container.read(data)
        ends = container.prefix_sizes(header, chunks)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()  # HTTP/1.0, no length: the body ends when the connection closes
        at = 0
        for n, end in enumerate(ends):
            if n:
                with self.shown:
                    self.shown.wait_for(lambda n=n: self.frames.get(stream, 0) >= n, WAIT)
            while at < end:
                self.wfile.write(data[at : min(at + 32, end)])
                self.wfile.flush()
                at = min(at + 32, end)
                time.sleep(0.002)  # throttled: the decoder sees the stream arrive in pieces


@pytest.fixture(scope="module")
def site(tmp_path_factory, model_dir):
    """The loopback server: web/ at /, the models the vectors name at /models/, files at /files/."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing: install Debian's chromium package (.ci/run does) to test the web decoder")
    pytest.importorskip("playwright", reason="the web decoder's tests run Chromium through Playwright")
    assert (WEB / "node_modules" / "onnxruntime-web").is_dir(), "web/'s packages are missing: npm ci --prefix web"
    models, files = tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("files")
    env = {**os.environ, MODEL_PATH_ENV: os.pathsep.join([str(model_dir), str(VECTORS)])}
    staged = subprocess.run([sys.executable, str(WEB / "stage_models.py"), str(models)], env=env, capture_output=True, text=True)
    assert staged.returncode == 0, staged.stderr
    for name in NAMES:
        (files / f"{name}.rnc").write_bytes((VECTORS / f"{name}.rnc").read_bytes())
    server, url = web_serve.serve({"/models/": models, "/files/": files}, GatedHandler)
    yield url, files
    server.shutdown()


@pytest.fixture(scope="module")
def page(site):
    from playwright.sync_api import sync_playwright

    url, _ = site
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page()
        page.on("pageerror", lambda e: PAGE_ERRORS.append(str(e)))
        page.goto(f"{url}/index.html")
        assert page.evaluate("crossOriginIsolated"), "the server's COOP/COEP headers did not take"
        yield page
        browser.close()


# decode(URL, options) in the page: the bits' SHA-256 (tiles in raster order, each tile's
# iterations in order, as tests/conftest.entropy_bits), the frames, and the last image
DECODE = """async ([src, options]) => {
  const { decode } = await import("/rnc.js");
  const tiles = [], frames = [];
  let ended = false, id = options.id;
  const response = await fetch(src);
  const body = response.body.pipeThrough(new TransformStream({ flush() { ended = true; } }));
  try {
    const result = await decode(body, { ...options, models: "/models/",
      onBits: (t, i, bits) => { (tiles[i] ??= [])[t] = bits; },
      onFrame: async ({ iteration }) => {
        frames.push({ iteration, ended });
        if (id) await fetch(`/frame?id=${id}&n=${iteration}`);
      } });
    const all = new Uint8Array(tiles.flat().reduce((n, b) => n + b.length, 0));
    let at = 0;
    for (const b of tiles.flat()) { all.set(b, at); at += b.length; }
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
    return { sha: Array.from(digest, (x) => x.toString(16).padStart(2, "0")).join(""), frames,
             iterations: result.iterations, note: result.note, width: result.width, height: result.height,
             pixels: result.image ? Array.from(result.image.data) : null };
  } catch (err) {
    return { error: `${err.name}: ${err.message}`, frames };
  }
}"""


def run(page, src: str, **options) -> dict:
    return page.evaluate(DECODE, [src, options])


def expected(name: str) -> dict:
    return json.loads((VECTORS / f"{name}.json").read_text())


@pytest.mark.parametrize("name", PORTABLE)
def test_every_portable_vector_decodes_to_its_bits(page, name):
    got = run(page, f"/files/{name}.rnc", bitsOnly=True)
    assert got.get("error") is None
    assert got["sha"] == expected(name)["bits_sha256"]


@pytest.mark.parametrize("name", sorted(set(NAMES) - set(PORTABLE)))
def test_a_coder_1_file_is_refused_in_one_line(page, name):
    got = run(page, f"/files/{name}.rnc", bitsOnly=True)
    assert got["error"].startswith("FormatError: the file was written by coder 1") and "\n" not in got["error"]


@pytest.mark.parametrize("name", PORTABLE)
def test_pixels_match_python_as_another_engine_does(page, monkeypatch, name):
    monkeypatch.setenv(MODEL_PATH_ENV, os.pathsep.join([os.environ[MODEL_PATH_ENV], str(VECTORS)]))
    dec = decode((VECTORS / f"{name}.rnc").read_bytes())
    got = run(page, f"/files/{name}.rnc")
    assert got.get("error") is None and got["sha"] == expected(name)["bits_sha256"]
    rgba = np.array(got["pixels"], np.uint8).reshape(got["height"], got["width"], 4)
    assert np.abs(rgba[..., :3].astype(int) - dec.pixels).max() <= TOLERANCE
    if dec.alpha is not None:  # lossless
        assert hashlib.sha256(rgba[..., 3].tobytes()).hexdigest() == expected(name)["alpha_sha256"]
    else:
        assert (rgba[..., 3] == 255).all()


@pytest.mark.parametrize("name", PORTABLE)
def test_a_stream_that_arrives_in_pieces_shows_each_iteration_before_it_ends(page, name):
    got = run(page, f"/gated/{name}.rnc?id={name}", id=name)
    n = container.read((VECTORS / f"{name}.rnc").read_bytes())[0].iterations
    assert got.get("error") is None and got["sha"] == expected(name)["bits_sha256"]
    assert [f["iteration"] for f in got["frames"]] == list(range(1, n + 1))
    assert [f["ended"] for f in got["frames"][:-1]] == [False] * (n - 1)  # all but the last while it downloads


def test_a_raw_coded_file_decodes_to_its_bits(page, site, model_dir, tmp_path):
    """Coder 0 (raw bits), in two tiles: no conformance vector holds it."""
    _, files = site
    Image.fromarray(smooth_image(40, 56)).save(tmp_path / "a.png")
    subprocess.run([sys.executable, "-m", "rnncodec.cli", "compress", str(tmp_path / "a.png"), "-o", str(files / "raw.rnc"),
                    "--coder", "raw", "--iterations", "2", "--tile", "32", "--model", str(model_dir / "tiny.safetensors")],
                   check=True, capture_output=True)
    data = (files / "raw.rnc").read_bytes()
    assert container.read(data)[0].coder_id == 0
    got = run(page, "/files/raw.rnc")
    assert got.get("error") is None and [f["iteration"] for f in got["frames"]] == [1, 2]
    assert got["sha"] == hashlib.sha256(entropy_bits(data).tobytes()).hexdigest()


def cut_and_corrupt(files: Path, name: str) -> dict[str, bytes]:
    data = (files / f"{name}.rnc").read_bytes()
    header, chunks = container.read(data)
    ends = container.prefix_sizes(header, chunks)
    flipped = bytearray(data)
    flipped[ends[0] - 3] ^= 0x40  # inside the first chunk's payload
    return {"mid-chunk": data[: (ends[-2] + ends[-1]) // 2], "header": data[:20], "flipped": bytes(flipped),
            "trailing": data + b"\0"}


def test_a_stream_cut_inside_a_chunk_decodes_its_complete_iterations(page, site):
    _, files = site
    (files / "cut.rnc").write_bytes(cut_and_corrupt(files, "default-coder2-tiles")["mid-chunk"])
    got = run(page, "/files/cut.rnc")
    assert got.get("error") is None
    assert got["iterations"] == 2 and [f["iteration"] for f in got["frames"]] == [1, 2]
    assert "ends inside chunk 3" in got["note"] and "2 complete iterations of 3" in got["note"]
    strict = run(page, "/files/cut.rnc", strict=True)
    assert strict["error"] == "FormatError: truncated inside chunk 3"


@pytest.mark.parametrize("kind, message", [("header", "truncated header"), ("flipped", ""),
                                           ("trailing", "trailing data after the last chunk")])
def test_a_cut_header_or_a_corrupt_stream_is_an_error_without_a_frame_of_it(page, site, kind, message):
    _, files = site
    (files / f"{kind}.rnc").write_bytes(cut_and_corrupt(files, "default-coder2-tiles")[kind])
    got = run(page, f"/files/{kind}.rnc")
    assert got["error"].startswith("FormatError: ") and message in got["error"]
    assert len(got["frames"]) == (3 if kind == "trailing" else 0)  # a corrupt iteration shows no frame


def test_the_viewer_shows_a_file_and_an_error(page, site):
    url, files = site
    page.goto(f"{url}/index.html?src=files/coder2.rnc")
    view = page.locator("#view")
    page.wait_for_function("document.getElementById('view').hasAttribute('data-done')")
    assert view.get_attribute("data-iteration") == "3" and view.get_attribute("data-error") is None
    shot = page.evaluate("""() => { const c = document.getElementById('view').shadowRoot.querySelector('canvas');
      return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }""")
    assert len(shot) == 48 * 32 * 4 and np.std(shot) > 5
    bad = bytearray((files / "coder2.rnc").read_bytes())
    bad[25] ^= 1  # the width: the header's CRC no longer matches
    (files / "bad.rnc").write_bytes(bytes(bad))
    page.goto(f"{url}/index.html?src=files/bad.rnc")
    page.wait_for_function("document.getElementById('view').hasAttribute('data-error')")
    assert "header CRC mismatch" in view.get_attribute("data-error")
    assert PAGE_ERRORS == []

"""The JavaScript decoder (web/) in headless Chromium against Python's decoder, on one image.

    python bench/web_decode.py ../shared/data/kodak/kodim23.png --iterations 4 8 [--screenshot shot.png]

Compresses the image at the largest of `--iterations` with `rnncodec compress` (its defaults: the
default model, coder 2) and cuts the file to each smaller count (a prefix is a valid file). Then,
for each count, best of `--repeats` after a first run:
- Python: `rnncodec.codec.decode` in this process (its default engine, ONNX Runtime, at its
  default threads), and `rnncodec decompress` as a whole process (start-up and model loading
  included);
- Chromium (Debian's, headless, through Playwright), the page served from loopback cross-origin
  isolated so that ONNX Runtime Web's WASM backend runs 2 threads: `decode` of web/rnc.js with the
  models loaded (warm), its time to the first frame, the bits alone (`bitsOnly`), and the first
  decode in a fresh page (cold: fetching the models and building the sessions included).
`--screenshot` saves the viewer's frames after iterations 1, 2, 4 and the last, side by side.
Needs web/'s npm packages (`npm ci --prefix web`).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rnncodec import container
from rnncodec.codec import decode

WEB = Path(__file__).resolve().parent.parent / "web"
CHROMIUM = "/usr/bin/chromium"

RUNS = """async ([src, repeats, bitsOnly]) => {
  const { decode } = await import("/rnc.js");
  const ort = await import("onnxruntime-web");
  const runs = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    let first = null;
    await decode(fetch(src), { models: "/models/", bitsOnly, onBits: () => {},
      onFrame: () => { first ??= performance.now() - t0; } });
    runs.push({ total: (performance.now() - t0) / 1000, first: first === null ? null : first / 1000 });
  }
  return { runs, threads: ort.env.wasm.numThreads, isolated: crossOriginIsolated };
}"""

FIGURE = """async ([src, shown, sizes, width]) => {
  const { decode } = await import("/rnc.js");
  const figure = document.createElement("div");
  figure.id = "figure";
  figure.style.cssText = "display:flex;gap:6px;padding:6px;background:#fff;font:13px system-ui,sans-serif;width:max-content";
  document.body.replaceChildren(figure);
  await decode(fetch(src), { models: "/models/", onFrame: ({ image, iteration }) => {
    if (!shown.includes(iteration)) return;
    const cell = document.createElement("div"), canvas = document.createElement("canvas");
    [canvas.width, canvas.height] = [image.width, image.height];
    canvas.getContext("2d").putImageData(image, 0, 0);
    canvas.style.width = `${width}px`;
    canvas.style.display = "block";
    const label = document.createElement("div");
    label.textContent = `iteration ${iteration}: first ${sizes[iteration - 1].toLocaleString("en")} bytes`;
    cell.append(canvas, label);
    figure.append(cell);
  } });
}"""


def best(times: list[float]) -> float:
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path)
    parser.add_argument("--iterations", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    spec = importlib.util.spec_from_file_location("web_serve", WEB / "serve.py")
    web_serve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(web_serve)
    work = Path(tempfile.mkdtemp())
    most = max(args.iterations)
    full = work / f"{args.image.stem}-{most}.rnc"
    subprocess.run([sys.executable, "-m", "rnncodec.cli", "compress", str(args.image), "-o", str(full), "--iterations",
                    str(most), "--force"], check=True)
    header, chunks = container.read(full.read_bytes())
    sizes = container.prefix_sizes(header, chunks)
    for n in args.iterations:
        (work / f"{n}.rnc").write_bytes(container.truncate(header, chunks, n))
    subprocess.run([sys.executable, str(WEB / "stage_models.py"), str(work / "models")], check=True, capture_output=True)
    server, url = web_serve.serve({"/models/": work / "models", "/files/": work})
    print(f"# {args.image.name}, {header.width}×{header.height}, model {header.model_id.hex()}, coder {header.coder_id}; "
          f"{platform.machine()}, {os.cpu_count()} CPUs; best of {args.repeats} after a first run")
    print("| iterations | bytes | Python decode() s | `rnncodec decompress` s | Chromium warm s | first frame s "
          "| bits alone s | Chromium cold s | cold first frame s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        for n in args.iterations:
            data = (work / f"{n}.rnc").read_bytes()
            decode(data)  # models loaded
            python = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                decode(data)
                python.append(time.perf_counter() - t0)
            cli = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "rnncodec.cli", "decompress", str(work / f"{n}.rnc"), "-o",
                                str(work / "out.png"), "--force"], check=True)
                cli.append(time.perf_counter() - t0)
            page = browser.new_page()
            page.goto(f"{url}/index.html")
            cold = page.evaluate(RUNS, [f"/files/{n}.rnc", 1, False])
            assert cold["isolated"] and cold["threads"] == 2, cold
            warm = page.evaluate(RUNS, [f"/files/{n}.rnc", args.repeats, False])["runs"]
            bits = page.evaluate(RUNS, [f"/files/{n}.rnc", args.repeats, True])["runs"]
            page.close()
            print(f"| {n} | {len(data):,} | {best(python):.2f} | {best(cli):.2f} | {best([r['total'] for r in warm]):.2f} "
                  f"| {best([r['first'] for r in warm]):.2f} | {best([r['total'] for r in bits]):.2f} "
                  f"| {cold['runs'][0]['total']:.2f} | {cold['runs'][0]['first']:.2f} |", flush=True)
        if args.screenshot:
            page = browser.new_page(viewport={"width": 1400, "height": 600})
            page.goto(f"{url}/index.html")
            shown = sorted({1, 2, 4, most})
            page.evaluate(FIGURE, [f"/files/{full.name}", shown, sizes, 256])
            page.locator("#figure").screenshot(path=str(args.screenshot))
            print(f"wrote {args.screenshot}")
        browser.close()
    server.shutdown()


if __name__ == "__main__":
    main()

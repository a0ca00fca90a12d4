"""Serve the viewer on loopback: this folder at /, a models folder at /models/, and .rnc files at
/files/, cross-origin isolated (COOP and COEP headers), so that ONNX Runtime Web may use threads.

    python web/serve.py --models MODELS --files FOLDER [--port 8000]

then open http://127.0.0.1:8000/index.html?src=files/photo.rnc. Any static server does for the
viewer; without those headers it decodes on one thread.
"""
from __future__ import annotations

import argparse
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

WEB = Path(__file__).resolve().parent


class Handler(SimpleHTTPRequestHandler):
    """Static files from `routes` (URL prefix -> folder, the longest prefix first)."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript", ".mjs": "text/javascript",
                      ".wasm": "application/wasm", ".rnc": "application/octet-stream"}

    def __init__(self, *args, routes: dict[str, Path], **kwargs) -> None:
        self.routes = routes
        super().__init__(*args, directory=str(routes["/"]), **kwargs)

    def translate_path(self, path: str) -> str:
        path = unquote(urlsplit(path).path)
        for prefix in sorted(self.routes, key=len, reverse=True):
            if path.startswith(prefix):
                root = self.routes[prefix].resolve()
                target = (root / path[len(prefix):]).resolve()
                return str(target) if target.is_relative_to(root) else str(root / "\0")  # no way out of the root
        return str(self.routes["/"] / "\0")

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        """Quiet: a viewer's requests are many and expected."""


def serve(routes: dict[str, Path], handler: type[Handler] = Handler, port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start serving `routes` ("/" is this folder unless given) on 127.0.0.1 in a daemon thread;
    the server and its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", port), partial(handler, routes={"/": WEB, **routes}))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=WEB / "models")
    parser.add_argument("--files", type=Path, default=Path.cwd())
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    server, url = serve({"/models/": args.models, "/files/": args.files}, port=args.port)
    print(f"serving {url}/index.html (Ctrl-C stops)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()

"""A local web demo: a page where a person drops an image and sees the decision, the model and the map.

Standard library only (``http.server``), so it needs no extra install and runs offline: the page, its script and
its style come from :mod:`edgedetect.serve_page`, nothing from a CDN. Uploaded bytes are decoded in memory and
never written to disk. By default the server listens on 127.0.0.1 only and answers only requests addressed to
``localhost``/``127.0.0.1`` (a guard against DNS rebinding).

Routes: ``GET /`` the page, ``GET /app.js``, ``GET /style.css``, ``GET /api/model`` the model and its input
domain, ``POST /api/explain`` (body: the file's bytes; header ``X-File-Name``) the decision and the picture.

Usable from Python::

    from edgedetect.serve import ServeConfig, make_server
    server = make_server(ServeConfig(port=0)); print(server.url); server.serve_forever()
"""

from __future__ import annotations

import base64
import ipaddress
import json
import math
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import unquote

from edgedetect.errors import EdgeDetectError, ImageError

DEFAULT_PORT = 8000
DEFAULT_MAX_MB = 20.0
_DRAIN_LIMIT = 256 << 20  # read (and drop) at most this much of a refused body, so the browser gets the answer


@dataclass
class ServeConfig:
    """Settings of ``edgedetect serve``.

    Attributes:
        model: the .tflite model [default: the shipped model].
        host: address to listen on; 127.0.0.1 keeps the demo on this machine.
        port: TCP port; 0 picks a free one (the server's ``url`` says which).
        max_mb: largest upload accepted, in megabytes.
        threads: interpreter threads [default: all cores].
    """

    model: Optional[str] = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_mb: float = DEFAULT_MAX_MB
    threads: Optional[int] = None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def input_domain(clf) -> dict:
    """What the model was made for, in words and numbers: input size, how an image reaches it, training data."""
    meta = clf.metadata
    size = clf.input_size
    training = meta.training if isinstance(meta.training, dict) else {}
    data = training.get("data") or ""
    sources = training.get("sources")
    if isinstance(sources, list) and sources:
        data_name = " + ".join(map(str, sources))
    else:
        data_name = Path(str(data)).name if isinstance(data, str) and data else "unknown data"
    mode = clf.mode
    if mode == "crops":
        how = f"scores up to {meta.preprocessing.get('max_crops', 16)} {size}x{size} crops of the image at its own resolution"
    else:
        how = f"sees the centre square of an image shrunk to {size}x{size} pixels"
    return {"input_size": size, "preprocessing": mode, "trained_on": data_name,
            "text": f"{size}x{size} input; it {how}; trained on {data_name}"}


class Demo:
    """The model behind the page: explains uploaded bytes, one at a time (the interpreter is not thread-safe)."""

    def __init__(self, cfg: ServeConfig):
        from edgedetect.explain import AutoExplainer, Explainer
        from edgedetect.predict import AutoModel, load_default_models, model_description
        from edgedetect.runtime import Classifier

        self.cfg = cfg
        model = Classifier(cfg.model, threads=cfg.threads) if cfg.model else load_default_models(cfg.threads)
        self.models = {m.path.name: m for m in (model.models if isinstance(model, AutoModel) else [model])}
        self.explainer = AutoExplainer(model) if isinstance(model, AutoModel) else Explainer(model)
        self.clf = model.small if isinstance(model, AutoModel) else model  # the one whose occlusion batch is set up
        self.max_bytes = int(cfg.max_mb * 1_000_000)
        self.description = model_description(model)
        self._lock = threading.Lock()
        first = self.explainer.explainers[id(self.clf)] if isinstance(model, AutoModel) else self.explainer
        if first.mode == "resize":  # allocate the occlusion batch now, not in the first visitor's request
            import numpy as np

            s = self.clf.input_size
            self.clf.predict(np.zeros((first.images_per_explanation, s, s, 3), np.uint8))

    def model_info(self, name: str | None = None) -> dict:
        """The model that decided (``name``), or the page's default description before any upload."""
        from edgedetect.predict import model_description

        clf = self.models.get(name, self.clf)
        meta = clf.metadata
        return {"model": clf.path.name, "description": model_description(clf) if name else self.description,
                "arch": meta.arch, "precision": meta.precision, "threshold": clf.threshold,
                "domain": input_domain(clf), "method": self.explainer.method_line(), "max_bytes": self.max_bytes,
                "interpreter": f"{clf.interpreter_package} {clf.interpreter_version}"}

    def explain(self, data: bytes, name: str) -> tuple[int, dict]:
        """``(HTTP status, JSON document)`` for an uploaded file."""
        from edgedetect.explain_render import decision_line, png_bytes, render_explanation
        from edgedetect.predict import model_description

        if not data:
            return HTTPStatus.BAD_REQUEST, {"error": f"{name}: the file is empty (0 bytes); choose an image file"}
        try:
            with self._lock:
                e, img = self.explainer.explain(data, name=name)
        except ImageError as exc:
            problem = exc.problem
            return HTTPStatus.BAD_REQUEST, {"error": f"{name} is not an image this demo can read: {problem}. "
                                                     "Choose a JPEG, PNG, WebP, GIF, BMP or TIFF file."}
        picture = png_bytes(render_explanation(e, img, model_description(self.models[e.model])))
        return HTTPStatus.OK, {
            "name": name, "label": e.label, "p_fake": e.p_fake, "threshold": e.threshold, "decision": decision_line(e),
            "model": self.model_info(e.model), "method": e.method, "images_run": e.n_images, "invokes": e.n_invokes,
            "ms": round(1000 * e.seconds, 1), "image_size": list(e.image_size), "peak": e.peak(),
            "note": e.warning,
            "picture": "data:image/png;base64," + base64.b64encode(picture).decode("ascii"),
        }


class _Handler(BaseHTTPRequestHandler):
    server: "DemoServer"
    protocol_version = "HTTP/1.1"
    server_version = "edgedetect-demo"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        self.server.log(f"{self.address_string()} {format % args}")

    def _send(self, status: int, body: bytes, content_type: str, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy",
                         "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: dict, close: bool = False) -> None:
        self._send(status, json.dumps(doc).encode("utf-8"), "application/json; charset=utf-8", close)

    def _host_allowed(self) -> bool:
        if not self.server.loopback_only:
            return True
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        if is_loopback(host):
            return True
        self._json(HTTPStatus.FORBIDDEN, {"error": f"requests for host {host!r} are refused; open http://127.0.0.1"})
        return False

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        from edgedetect.serve_page import APP_JS, INDEX_HTML, STYLE_CSS

        if not self._host_allowed():
            return
        path = self.path.split("?", 1)[0]
        pages = {"/": (INDEX_HTML, "text/html; charset=utf-8"), "/app.js": (APP_JS, "text/javascript; charset=utf-8"),
                 "/style.css": (STYLE_CSS, "text/css; charset=utf-8")}
        if path in pages:
            text, kind = pages[path]
            self._send(HTTPStatus.OK, text.encode("utf-8"), kind)
        elif path == "/api/model":
            self._json(HTTPStatus.OK, self.server.demo.model_info())
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {path}"})

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        if not self._host_allowed():
            return
        if self.path.split("?", 1)[0] != "/api/explain":
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no endpoint {self.path}"}, close=True)
            return
        name = unquote(self.headers.get("X-File-Name") or "upload")[:200] or "upload"
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._json(HTTPStatus.LENGTH_REQUIRED, {"error": "the upload has no Content-Length"}, close=True)
            return
        limit = self.server.demo.max_bytes
        if length > limit:
            self._drain(length)
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       {"error": f"{name} is too large: {length / 1e6:.1f} MB; this demo takes files up to "
                                 f"{limit / 1e6:g} MB (edgedetect serve --max-mb)"}, close=True)
            return
        data = self.rfile.read(length)
        status, doc = self.server.demo.explain(data, name)
        self._json(status, doc)

    def _drain(self, length: int) -> None:
        left = min(length, _DRAIN_LIMIT)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)


class DemoServer(ThreadingHTTPServer):
    """The HTTP server of the demo; ``url`` is where to open it."""

    daemon_threads = True

    def __init__(self, cfg: ServeConfig, demo: Demo, log: Callable[[str], None]):
        self.demo = demo
        self.log = log
        self.loopback_only = is_loopback(cfg.host)
        super().__init__((cfg.host, cfg.port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = host if ":" not in host else f"[{host}]"
        return f"http://{shown}:{port}/"


def make_server(cfg: ServeConfig, log: Callable[[str], None] = lambda line: None) -> DemoServer:
    """Load the model and bind the port (not yet serving; call ``serve_forever``).

    Raises:
        EdgeDetectError: bad settings, a model that cannot be loaded, or a port that is taken.
    """
    if not (0 <= cfg.port <= 65535):
        raise EdgeDetectError(f"--port {cfg.port}: must be between 0 (any free port) and 65535")
    if not (cfg.max_mb > 0 and math.isfinite(cfg.max_mb)):
        raise EdgeDetectError(f"--max-mb {cfg.max_mb}: must be a positive number of megabytes")
    demo = Demo(cfg)
    try:
        return DemoServer(cfg, demo, log)
    except OSError as e:
        raise EdgeDetectError(f"cannot listen on {cfg.host}:{cfg.port} ({e.strerror or e}); "
                              "choose another --port (0 picks a free one)") from None

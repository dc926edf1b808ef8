"""`edgedetect serve`: the demo server's answers, over HTTP on 127.0.0.1 (the browser test drives the page itself)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from conftest import REPO
from edgedetect.errors import EdgeDetectError
from edgedetect.serve import ServeConfig, make_server

CAT = REPO / "imgs" / "real" / "cat.jpg"


@pytest.fixture(scope="module")
def server():
    srv = make_server(ServeConfig(port=0, max_mb=1.0, threads=1))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def request(srv, path: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict | str]:
    req = urllib.request.Request(srv.url.rstrip("/") + path, data=data, headers=headers or {},
                                 method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, body, kind = r.status, r.read(), r.headers["Content-Type"]
    except urllib.error.HTTPError as e:
        status, body, kind = e.code, e.read(), e.headers["Content-Type"]
    return status, json.loads(body) if kind.startswith("application/json") else body.decode()


def test_listens_on_loopback_and_serves_the_page_from_the_package(server):
    assert server.url.startswith("http://127.0.0.1:")
    status, page = request(server, "/")
    assert status == 200 and 'id="file"' in page and "/app.js" in page
    assert "http://" not in page and "https://" not in page  # nothing from a CDN
    status, info = request(server, "/api/model")
    assert info["model"] == "cnn_pair32_int8.tflite" and info["domain"]["input_size"] == 32
    assert info["max_bytes"] == 1_000_000


def test_an_image_gets_the_decision_the_model_and_the_picture(server):
    from edgedetect.predict import load_default_models, predict_files

    status, doc = request(server, "/api/explain", CAT.read_bytes(), {"X-File-Name": "cat.jpg"})
    assert status == 200, doc
    (expected,) = predict_files(load_default_models(threads=1), [str(CAT)])  # what `edgedetect predict` says
    assert doc["label"] == expected["label"] and doc["p_fake"] == pytest.approx(expected["p_fake"], abs=1e-6)
    assert doc["model"]["model"] == expected["model"] and doc["threshold"] == pytest.approx(expected["threshold"])
    sign = "≥" if doc["label"] == "FAKE" else "<"
    assert doc["decision"].startswith(f"{doc['label']} · p_fake {doc['p_fake']:.3f} {sign} threshold {doc['threshold']:.3f}")
    assert doc["picture"].startswith("data:image/png;base64,")
    assert doc["note"] == expected["warning"]


def test_a_photo_given_to_the_32_px_model_carries_the_out_of_domain_note():
    srv = make_server(ServeConfig(model=str(REPO / "models" / "cnn_pair32_int8.tflite"), port=0, threads=1))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        status, doc = request(srv, "/api/explain", CAT.read_bytes(), {"X-File-Name": "cat.jpg"})
    finally:
        srv.shutdown()
        srv.server_close()
    assert status == 200 and doc["invokes"] == 1  # occlusion: every occluded copy in one invoke
    assert "451x300 px resized to 32 px" in doc["note"]  # far outside a 32-px model's domain


def test_a_broken_file_an_empty_one_and_a_large_one_get_clear_messages(server):
    status, doc = request(server, "/api/explain", b"%PDF-1.4 not an image", {"X-File-Name": "report.pdf"})
    assert status == 400 and doc["error"].startswith("report.pdf is not an image this demo can read")
    status, doc = request(server, "/api/explain", b"", {"X-File-Name": "empty.png"})
    assert status == 400 and "empty" in doc["error"]
    status, doc = request(server, "/api/explain", b"\0" * 1_500_000, {"X-File-Name": "huge.png"})
    assert status == 413 and doc["error"] == ("huge.png is too large: 1.5 MB; this demo takes files up to 1 MB "
                                              "(edgedetect serve --max-mb)")


def test_requests_for_another_host_name_are_refused(server):
    status, doc = request(server, "/api/model", headers={"Host": "attacker.example"})
    assert status == 403 and "attacker.example" in doc["error"]


def test_a_taken_port_is_a_one_line_error(server):
    port = server.server_address[1]
    with pytest.raises(EdgeDetectError, match=rf"cannot listen on 127.0.0.1:{port} .*choose another --port"):
        make_server(ServeConfig(port=port))

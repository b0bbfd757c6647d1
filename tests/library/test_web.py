"""The gallery's HTTP side (FastAPI TestClient): the JSON API, downloads, and what it refuses to serve."""

import io
import json
import zipfile

import pytest

pytest.importorskip("fastapi", reason="the gallery needs the web extra: pip install 'vidgan[web]'")
from fastapi.testclient import TestClient  # noqa: E402

from vidgan.library.catalog import Library  # noqa: E402
from vidgan.library.ingest import Ingester  # noqa: E402
from vidgan.library.maintenance import soft_delete  # noqa: E402
from vidgan.library.tables import Clip  # noqa: E402
from vidgan.library.web import create_app  # noqa: E402

BASE = "http://127.0.0.1"


@pytest.fixture(scope="module")
def gallery_lib(clip_files, tmp_path_factory):
    root = tmp_path_factory.mktemp("gallery") / "lib"
    with Library.init(root) as lib:
        ingester = Ingester(lib)
        specs = [
            ("videogan", 3, ["sky"], {"fvd2048_16f": 200.0}, "waves at dusk"),
            ("tgan", 1, ["sky", "night"], {"fvd2048_16f": 500.0}, "a red circle"),
            ("videogan", 7, [], {}, None),
            ("mocogan", 3, ["night"], {"fvd2048_16f": 50.0}, "digits moving"),
        ]
        for path, (model, label, tags, scores, caption) in zip(clip_files, specs):
            ingester.add_file(
                path,
                provenance={
                    "model": model,
                    "label": label,
                    "label_name": str(label),
                    "seed": 5,
                    "step": 100,
                    "settings": {"call": {"n": 4, "seed": 5}},
                },
                tags=tags,
                scores=scores,
                caption=caption,
            )
        ingester.add_file(clip_files[5])  # clip 5: gets deleted
        soft_delete(lib, [5])
    return root


@pytest.fixture(scope="module")
def client(gallery_lib):
    with TestClient(create_app(gallery_lib), base_url=BASE) as c:
        yield c


def ids(response) -> list[int]:
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()["clips"]]


def test_api_lists_filters_and_describes_clips(client, gallery_lib):
    assert client.get("/api/info").json() | {"name": None} == {"name": None, "clips": 4, "allow_edit": False, "search": "fts5"}
    facets = client.get("/api/facets").json()
    assert facets["models"] == ["mocogan", "tgan", "videogan"] and {t["tag"] for t in facets["tags"]} == {"sky", "night"}
    assert ids(client.get("/api/clips")) == [4, 3, 2, 1]  # newest first; the deleted clip 5 is not there
    assert ids(client.get("/api/clips", params={"model": "videogan", "sort": "id"})) == [1, 3]
    assert ids(client.get("/api/clips", params={"label": "3", "sort": "id"})) == [1, 4]
    assert ids(client.get("/api/clips", params=[("tag", "sky"), ("tag", "night")])) == [2]
    assert ids(client.get("/api/clips", params={"text": "circle"})) == [2]
    assert ids(client.get("/api/clips", params={"min_score": "fvd2048_16f=100", "sort": "fvd2048_16f"})) == [1, 2]
    page = client.get("/api/clips", params={"sort": "id", "limit": 2, "offset": 2}).json()
    assert page["total"] == 4 and [c["id"] for c in page["clips"]] == [3, 4]

    clip = client.get("/api/clips/2").json()
    assert clip["provenance"]["seed"] == 5 and clip["provenance"]["step"] == 100 and clip["model"] == "tgan"
    assert clip["scores"]["fvd2048_16f"] == 500.0 and "motion" in clip["score_protocols"] and clip["browser_video"]
    video = client.get("/files/2/video")
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert video.content == (gallery_lib / clip["file"]).read_bytes()
    download = client.get("/files/2/video", params={"download": "true"})
    assert 'attachment; filename="clip_000002.mp4"' in download.headers["content-disposition"]
    assert client.get("/files/2/poster").content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get("/files/2/preview").headers["content-type"] == "image/webp"
    stored = client.get("/" + clip["preview"])
    assert stored.status_code == 200 and "immutable" in stored.headers["cache-control"]

    zipped = client.get("/api/download", params={"ids": "1,4"})
    assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as zf:
        assert sorted(zf.namelist()) == ["clip_000001.mp4", "clip_000004.mp4", "manifest.json"]
        manifest = json.loads(zf.read("manifest.json"))
        assert [c["provenance"]["model"] for c in manifest["clips"]] == ["videogan", "mocogan"]

    for page_url in ["/", "/clip/2"]:
        html = client.get(page_url)
        assert html.status_code == 200 and "/static/app.js" in html.text
        assert "default-src 'self'" in html.headers["content-security-policy"] and html.headers["x-content-type-options"] == "nosniff"
    assert "fetch(" in client.get("/static/app.js").text


@pytest.mark.parametrize(
    "url",
    [
        "/store/../library.db",
        "/store/%2e%2e/library.db",
        "/store/..%2flibrary.db",
        "/store/%2e%2e%2flibrary.db",
        "/store/ab/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/store/%2fetc%2fpasswd",
        "/store//etc/passwd",
        "/store/tmp/anything",
        "/store/nothing/here.mp4",
        "/store/a%00b",
        "/static/..%2f__init__.py",
        "/static/index.html%2f..",
        "/files/1/..%2f..%2flibrary.db",
        "/store/",
        "/store/..\\library.db",
    ],
)
def test_path_traversal_is_refused(client, url):
    response = client.get(url)
    assert response.status_code in (400, 404), (url, response.status_code)
    assert b"SQLite format" not in response.content and b"root:" not in response.content


def test_symlinks_and_rows_pointing_outside_the_root_are_refused(gallery_lib, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (gallery_lib / "store" / "ee").mkdir(exist_ok=True)
    (gallery_lib / "store" / "ee" / "out.mp4").symlink_to(secret)
    (gallery_lib / "store" / "ee" / "db.mp4").symlink_to(gallery_lib / "library.db")  # inside the root, outside the store
    with Library.open(gallery_lib) as lib, lib.session() as s:  # a row whose path was edited to leave the root
        evil = s.get(Clip, 3)
        evil.path = "store/../../secret.txt"
        s.commit()
    try:
        with TestClient(create_app(gallery_lib), base_url=BASE) as client:
            for url in ["/store/ee/out.mp4", "/store/ee/db.mp4", "/files/3/video"]:
                response = client.get(url)
                assert response.status_code == 404 and b"top secret" not in response.content and b"SQLite" not in response.content, url
            assert client.get("/api/download", params={"ids": "3"}).status_code == 404
    finally:
        with Library.open(gallery_lib) as lib, lib.session() as s:
            clip = s.get(Clip, 3)
            clip.path = f"store/{clip.sha256[:2]}/{clip.sha256}.mp4"
            s.commit()
        for name in ["out.mp4", "db.mp4"]:
            (gallery_lib / "store" / "ee" / name).unlink()


@pytest.mark.parametrize(
    "url, status",
    [
        ("/api/clips/0", 400),
        ("/api/clips/-1", 400),
        ("/api/clips/abc", 400),
        ("/api/clips/1e3", 400),
        ("/api/clips/99999999999999999999999999", 400),
        ("/api/clips/9223372036854775808", 400),
        ("/api/clips/9223372036854775807", 404),
        ("/api/clips/999", 404),
        ("/api/clips/5", 404),  # 5 is deleted
        ("/files/abc/video", 400),
        ("/files/1/secret", 400),
        ("/files/5/video", 404),
        ("/files/99999999999999999999/poster", 400),
        ("/clip/abc", 400),
        ("/clip/0", 400),
        ("/api/download?ids=", 400),
        ("/api/download?ids=1,abc", 400),
        ("/api/download?ids=99999999999999999999", 400),
        ("/api/download?ids=1,999", 404),
        ("/api/download?ids=" + ",".join(map(str, range(1, 1100))), 400),
        ("/api/clips?limit=0", 400),
        ("/api/clips?limit=100000", 400),
        ("/api/clips?offset=-1", 400),
        ("/api/clips?min_score=fvd", 400),
    ],
)
def test_absurd_ids_and_parameters_are_refused(client, url, status):
    assert client.get(url).status_code == status, url


def test_edits_only_with_allow_edit(gallery_lib):
    body = {"add": ["keeper"], "remove": []}
    with TestClient(create_app(gallery_lib), base_url=BASE) as read_only:
        response = read_only.put("/api/clips/1/tags", json=body)
        assert response.status_code == 403 and "--allow-edit" in response.json()["detail"]
        assert "keeper" not in read_only.get("/api/clips/1").json()["tags"]
    with TestClient(create_app(gallery_lib, allow_edit=True), base_url=BASE) as editable:
        assert editable.get("/api/info").json()["allow_edit"] is True
        response = editable.put("/api/clips/1/tags", json=body)
        assert response.status_code == 200 and response.json()["tags"] == ["keeper", "sky"]
        assert editable.put("/api/clips/1/tags", json={"add": [], "remove": ["keeper"]}).json()["tags"] == ["sky"]
        assert editable.put("/api/clips/1/tags", json={"add": ["a,b"]}).status_code == 400
        assert editable.put("/api/clips/999/tags", json=body).status_code == 404
        assert (
            editable.put("/api/clips/1/tags", content="add=x", headers={"content-type": "application/x-www-form-urlencoded"}).status_code
            == 415
        )


def test_only_local_host_names_are_answered(gallery_lib):
    with TestClient(create_app(gallery_lib), base_url="http://evil.example") as client:
        assert client.get("/api/info").status_code == 400  # a DNS-rebinding page cannot read the library
    with TestClient(create_app(gallery_lib), base_url="http://localhost:8000") as client:
        assert client.get("/api/info").status_code == 200


def test_host_allow_list_holds_on_every_address(gallery_lib):
    """--host 0.0.0.0 keeps the Host check: only local names and the --allowed-host names are answered."""
    with TestClient(create_app(gallery_lib, allow_edit=True, host="0.0.0.0"), base_url="http://evil.example") as client:
        assert client.get("/api/info").status_code == 400
        assert client.put("/api/clips/1/tags", json={"add": ["x"]}).status_code == 400
    app = create_app(gallery_lib, host="0.0.0.0", allowed_hosts=["gallery.lan"])
    with TestClient(app, base_url="http://gallery.lan") as client:
        assert client.get("/api/info").status_code == 200


def test_edits_must_come_from_the_gallery_itself(gallery_lib):
    body = {"add": ["keeper"], "remove": []}
    with TestClient(create_app(gallery_lib, allow_edit=True), base_url="http://127.0.0.1:8000") as client:
        for headers in ({"origin": "http://evil.example"}, {"origin": "null"}, {"sec-fetch-site": "cross-site"},
                        {"origin": "http://127.0.0.1:9999"}):  # fmt: skip
            response = client.put("/api/clips/1/tags", json=body, headers=headers)
            assert response.status_code == 403 and "cross-origin" in response.json()["detail"], headers
        assert "keeper" not in client.get("/api/clips/1").json()["tags"]
        same = {"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin", "content-type": "APPLICATION/JSON; charset=UTF-8"}
        response = client.put("/api/clips/1/tags", content=json.dumps(body), headers=same)
        assert response.status_code == 200 and "keeper" in response.json()["tags"]
        client.put("/api/clips/1/tags", json={"add": [], "remove": ["keeper"]})


def test_a_read_only_library_is_served_but_not_edited(gallery_lib):
    lib = Library.open(gallery_lib, read_only=True)
    with TestClient(create_app(lib, allow_edit=True), base_url=BASE) as client:
        assert client.get("/api/clips").json()["total"] >= 1
        assert client.get("/api/info").json()["allow_edit"] is False
        response = client.put("/api/clips/1/tags", json={"add": ["x"]})
        assert response.status_code == 403 and "read-only" in response.json()["detail"]


@pytest.mark.slow  # starts `vidgan serve`
def test_serve_command_runs_the_gallery_on_localhost(gallery_lib):
    """`vidgan serve LIB --port P` (the typer function the main CLI registers), as a real process."""
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = "import typer; from vidgan.library.cli import serve; typer.run(serve)"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(gallery_lib), "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=2).json()
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() is not None else "no answer"
                time.sleep(0.1)
        assert info["clips"] == 4 and info["allow_edit"] is False
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert f"http://127.0.0.1:{port}/" in output and "read-only" in output

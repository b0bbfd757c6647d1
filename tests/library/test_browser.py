"""The gallery in a real browser: Debian's Chromium, headless, driven by Playwright (no browser download).

The server is uvicorn in a thread on a free 127.0.0.1 port, over a library of real Moving MNIST clips."""

import os
import re
import shutil
import socket
import threading
import time
import zipfile
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("VIDGAN_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytest.importorskip("fastapi", reason="the gallery needs the web extra: pip install 'vidgan[web]'")
pytest.importorskip("uvicorn", reason="the gallery needs the web extra: pip install 'vidgan[web]'")
playwright_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs the playwright package (dev extra)")
if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
    pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's (apt-get install chromium) or set VIDGAN_CHROMIUM", allow_module_level=True)

import uvicorn  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

from vidgan.library.catalog import Library  # noqa: E402
from vidgan.library.ingest import Ingester  # noqa: E402
from vidgan.library.web import create_app  # noqa: E402


def poll(read, want, what: str, timeout: float = 10.0):
    """Wait until read() == want. (The page's CSP forbids eval, so page.wait_for_function with a string cannot run.)"""
    deadline = time.monotonic() + timeout
    while (got := read()) != want:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {got!r}")
        time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`vidgan serve` in a thread: the same app and uvicorn, on a free local port."""

    def __init__(self, root: Path, allow_edit: bool = False):
        self.port = _free_port()
        config = uvicorn.Config(create_app(root, allow_edit=allow_edit), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the gallery server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def library_root(clip_files, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browse") / "lib"
    specs = [
        ("videogan", 3, ["sky"], 200.0, "waves at dusk"),
        ("tgan", 1, ["night"], 500.0, "a red circle"),
        ("videogan", 7, [], None, "two digits"),
        ("mocogan", 3, ["sky"], 50.0, None),
    ]
    with Library.init(root) as lib:
        ingester = Ingester(lib)
        for path, (model, label, tags, fvd, caption) in zip(clip_files, specs):
            ingester.add_file(
                path,
                provenance={
                    "model": model,
                    "label": label,
                    "label_name": str(label),
                    "seed": 42,
                    "step": 1200,
                    "index": 2,
                    "run": "/runs/mnist",
                    "settings": {"call": {"n": 4, "seed": 42}},
                },
                tags=tags,
                scores={} if fvd is None else {"fvd2048_16f": fvd},
                caption=caption,
            )
    return root


def test_gallery_in_a_real_browser(browser, library_root, tmp_path):
    with Server(library_root) as url:
        context = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 800})
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready=gallery]")
        cards = page.locator("#grid .card")
        assert cards.count() == 4 and page.locator("#count").inner_text() == "4 clips"
        assert page.locator("#mode").inner_text() == "read-only"

        # hovering a card plays its animated preview; leaving shows the poster again
        thumb = page.locator('#grid .card[data-id="2"] img')
        assert thumb.get_attribute("src").endswith(".poster.png")
        thumb.hover()
        expect(thumb).to_have_attribute("src", re.compile(r"\.preview\.webp$"))
        poll(lambda: thumb.evaluate("img => img.complete && img.naturalWidth"), 32, "the preview to load")
        page.mouse.move(1000, 10)
        expect(thumb).to_have_attribute("src", re.compile(r"\.poster\.png$"))

        # filters narrow the grid: by model, by tag, by text, by score
        shown = lambda: sorted(cards.evaluate_all("cs => cs.map(c => +c.dataset.id)"))  # noqa: E731
        page.select_option("#f-model", "videogan")
        poll(shown, [1, 3], "the model filter")
        page.select_option("#f-model", "")
        page.select_option("#f-tag", "sky")
        poll(shown, [1, 4], "the tag filter")
        page.select_option("#f-tag", "")
        page.fill("#f-text", "circle")
        poll(shown, [2], "the text search")
        expect(page.locator("#count")).to_have_text("1 clips")
        page.fill("#f-text", "")
        page.select_option("#f-metric", "fvd2048_16f")
        page.fill("#f-min", "100")
        poll(shown, [1, 2], "the score filter")

        # a selection downloads as one zip
        page.check('#grid .card[data-id="1"] .pick')
        page.check('#grid .card[data-id="2"] .pick')
        with page.expect_download() as download:
            page.click("#download-selection")
        zipped = tmp_path / "selection.zip"
        download.value.save_as(zipped)
        with zipfile.ZipFile(zipped) as zf:
            assert sorted(zf.namelist()) == ["clip_000001.mp4", "clip_000002.mp4", "manifest.json"]

        # a clip page: the video, its provenance and scores, its download
        page.click('#grid .card[data-id="2"] a')
        page.wait_for_selector("body[data-ready=clip]")
        assert page.url.endswith("/clip/2")
        assert page.locator("#media video").get_attribute("src") == "/files/2/video"
        provenance = page.locator("#provenance").inner_text()
        assert "tgan" in provenance and "42" in provenance and "1200" in provenance and "/runs/mnist" in provenance
        assert "fvd2048_16f" in page.locator("#scores").inner_text() and "500" in page.locator("#scores").inner_text()
        assert page.locator("#tag-form").is_hidden()  # read-only: no tag editing
        page.screenshot(path=str(tmp_path / "clip_page.png"), full_page=True)
        assert (tmp_path / "clip_page.png").stat().st_size > 5000
        with page.expect_download() as download:
            page.click("#clip-download")
        assert download.value.suggested_filename == "clip_000002.mp4"
        saved = tmp_path / "one.mp4"
        download.value.save_as(saved)
        with Library.open(library_root) as lib, lib.session() as s:
            from vidgan.library.queries import get_clip

            assert saved.read_bytes() == (library_root / get_clip(s, 2).path).read_bytes()
        assert errors == []
        context.close()


def test_tag_editing_in_the_browser_with_allow_edit(browser, library_root, tmp_path):
    with Server(library_root, allow_edit=True) as url:
        page = browser.new_page()
        page.goto(url + "/clip/3")
        page.wait_for_selector("body[data-ready=clip]")
        page.fill("#tag-input", "keeper")
        page.click("#tag-form button")
        page.wait_for_selector("#tags .chip:has-text('keeper')")
        page.screenshot(path=str(tmp_path / "edit.png"))
        page.close()
    with Library.open(library_root) as lib, lib.session() as s:
        from vidgan.library.queries import get_clip

        assert [t.tag for t in get_clip(s, 3).tags] == ["keeper"]

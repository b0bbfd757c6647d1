"""Library at scale: ingest throughput, `ls` latency and gallery load time on N synthetic clips.

    python benchmarks/library_scale.py --n 10000 --out /tmp/vidgan-library-bench

Makes N different synthetic clips (coloured shapes moving over a gradient, 8 frames of 32x32, mp4),
ingests them all through the normal path (copy, decode, hashes, poster, preview, duplicate check,
one transaction each), then times queries on the full catalog and the gallery's first page in
headless Chromium (when installed). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

from vidgan.data.video_write import write_video
from vidgan.library.catalog import Library
from vidgan.library.ingest import Ingester
from vidgan.library.queries import ClipQuery, count_clips, find_clips


def synthetic_clip(rng: np.random.Generator, frames: int = 8, size: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    background = (rng.uniform(0, 80) + rng.uniform(-1.5, 1.5) * xx + rng.uniform(-1.5, 1.5) * yy).clip(0, 255)
    clip = np.repeat(np.repeat(background[None, :, :, None], frames, 0), 3, -1).astype(np.float32)
    for _ in range(rng.integers(1, 4)):
        color, radius = rng.uniform(60, 255, 3), rng.uniform(3, 9)
        (x, y), (vx, vy) = rng.uniform(0, size, 2), rng.uniform(-3, 3, 2)
        square = rng.random() < 0.5
        for t in range(frames):
            cx, cy = x + vx * t, y + vy * t
            inside = (np.maximum(abs(xx - cx), abs(yy - cy)) if square else np.hypot(xx - cx, yy - cy)) < radius
            clip[t][inside] = color
    return clip.round().astype(np.uint8)


def timed(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/vidgan-library-bench"))
    parser.add_argument("--reuse", action="store_true", help="measure queries on the library already in --out")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    root, sources = args.out / "lib", args.out / "src"

    if not args.reuse:
        shutil.rmtree(args.out, ignore_errors=True)
        sources.mkdir(parents=True)
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        files = [write_video(sources / f"clip_{i:05d}.mp4", synthetic_clip(rng), fps=8) for i in range(args.n)]
        print(f"made {args.n} synthetic mp4 clips in {time.perf_counter() - t0:.1f} s (not part of ingest)")
        models = ["videogan", "tgan", "mocogan", "videogan-2stream"]
        with Library.init(root) as lib:
            ingester = Ingester(lib)
            t0 = time.perf_counter()
            for i, path in enumerate(files):
                ingester.add_file(
                    path,
                    provenance={
                        "model": models[i % 4],
                        "label": i % 10,
                        "label_name": str(i % 10),
                        "seed": i // 16,
                        "n": 16,
                        "index": i % 16,
                        "step": 1000 * (i % 7),
                    },
                    tags=[["sky", "night", "city"][i % 3]] + (["keeper"] if i % 50 == 0 else []),
                    scores={"fvd2048_16f": float(100 + (i * 37) % 900)},
                    caption=f"synthetic shapes clip {i}",
                )
                if (i + 1) % 1000 == 0:
                    print(f"  {i + 1} clips, {(i + 1) / (time.perf_counter() - t0):.1f} clips/s", flush=True)
            seconds = time.perf_counter() - t0
        print(f"ingest: {args.n} clips in {seconds:.1f} s = {args.n / seconds:.1f} clips/s (1 process; files fsynced)")

    with Library.open(root) as lib:
        with lib.session() as s:
            total = count_clips(s)
        print(f"library: {total} clips, search: {'FTS5' if lib.fts else 'LIKE'}")
        queries = {
            "newest 100 (gallery first page)": ClipQuery(limit=100),
            "all, id order (ls)": ClipQuery(sort="id"),
            "--model tgan": ClipQuery(model="tgan", limit=100),
            "--label 3 --tag night": ClipQuery(label="3", tags=["night"], limit=100),
            "--text 'shapes 4242'": ClipQuery(text="shapes 4242"),
            "--min-score fvd2048_16f=900 --sort -fvd2048_16f": ClipQuery(min_scores={"fvd2048_16f": 900}, sort="-fvd2048_16f", limit=100),
        }
        for name, query in queries.items():

            def run(query=query):
                with lib.session() as s:
                    return find_clips(lib, s, query)

            matched = run()[0]
            print(f"ls {name}: {timed(run) * 1000:.1f} ms ({matched} match)")
        like = Library.open(root, use_fts=False)

        def run_like():
            with like.session() as s:
                return find_clips(like, s, ClipQuery(text="shapes 4242"))

        print(f"ls --text 'shapes 4242' with LIKE instead of FTS5: {timed(run_like) * 1000:.1f} ms")
        like.close()

    t0 = time.perf_counter()
    import subprocess

    subprocess.run([sys.executable, "-m", "vidgan.library.cli", "--help"], capture_output=True)
    cli_start = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", "from vidgan.library.cli import app; app()", "ls", str(root), "--model", "tgan", "--limit", "20"],
        capture_output=True,
        text=True,
    )
    print(
        f"`vidgan library ls LIB --model tgan --limit 20` wall time: {time.perf_counter() - t0:.2f} s "
        f"(of which Python + imports {cli_start:.2f} s); last line: {out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-200:]}"
    )

    gallery_load(root, args.chromium)


def gallery_load(root: Path, chromium: str) -> None:
    import socket

    import uvicorn

    from vidgan.library.web import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(root), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}/"
    try:
        import httpx

        with httpx.Client() as client:  # one client: a new one per request costs more than the request here
            for path in ["api/clips?limit=100", "api/facets", "api/clips?limit=100&text=shapes+4242", "files/7/poster"]:
                print(f"GET /{path}: {timed(lambda p=path: client.get(url + p).raise_for_status()) * 1000:.1f} ms")
        if not Path(chromium).exists():
            print(f"no Chromium at {chromium}: gallery load in a browser not measured")
            return
        from playwright.sync_api import sync_playwright

        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=flags)
            loads = []
            for _ in range(4):
                page = browser.new_page()
                t0 = time.perf_counter()
                page.goto(url)
                page.wait_for_selector("body[data-ready=gallery]")
                page.wait_for_load_state("load")  # the first page's 100 posters too
                loads.append(time.perf_counter() - t0)
                cards = page.locator("#grid .card").count()
                page.close()
            browser.close()
        print(
            f"gallery page load (headless Chromium, {cards} cards of the first page, posters loaded): "
            f"{statistics.median(loads[1:]) * 1000:.0f} ms median of 3 warm loads (first, cold: {loads[0] * 1000:.0f} ms)"
        )
    finally:
        server.should_exit = True
        thread.join(10)


if __name__ == "__main__":
    main()

"""report.html: the numbers, what they were measured with, and pictures a person can check.

One self-contained file (animations embedded as base64 gifs, plots as inline SVG):
- the metrics of this evaluation, with n and the protocol;
- real clips next to generated clips;
- the nearest real clip (in the feature space of the metrics) of a few generated clips, with the
  distance beside the typical distance between a real clip and its nearest other real clip; a
  generated clip far closer to one real clip than real clips are to each other is a likely copy
  (memorisation);
- each metric over training steps, when metrics.jsonl holds it for more than one step.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from pathlib import Path

import numpy as np

from vidgan.data.video_write import write_grid, write_video
from vidgan.metrics.precision_recall import kth_neighbour_radii, nearest_neighbours

GRID_CLIPS, NEIGHBOURS = 8, 4
COPY_RATIO = 0.25  # nearest-real distance below this share of the typical real-to-real distance: flagged


def _gif(clips: np.ndarray, fps: float = 8.0, grid: bool = True) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.gif"
        if grid:
            write_grid(path, clips, nrow=4, fps=fps)
        else:
            write_video(path, clips, fps=fps)
        return "data:image/gif;base64," + base64.b64encode(path.read_bytes()).decode()


def _img(src: str, title: str = "") -> str:
    return f'<img src="{src}" alt="{html.escape(title)}" title="{html.escape(title)}">'


def _svg_plot(points: list[tuple[int, float]], width: int = 360, height: int = 160) -> str:
    """A line plot of (step, value) points, drawn by hand."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    pad, span_x, span_y = 36, (x1 - x0) or 1, (y1 - y0) or 1

    def sx(x):
        return pad + (x - x0) / span_x * (width - 2 * pad)

    def sy(y):
        return height - pad + -(y - y0) / span_y * (height - 2 * pad)

    line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    dots = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3"><title>step {x}: {y:.5g}</title></circle>' for x, y in points)
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#999"/>'
        f'<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{line}"/>{dots}'
        f'<text x="{pad}" y="{height - 8}" font-size="11">step {x0}</text>'
        f'<text x="{width - pad}" y="{height - 8}" font-size="11" text-anchor="end">step {x1}</text>'
        f'<text x="4" y="{pad - 6}" font-size="11">{y1:.4g}</text>'
        f'<text x="4" y="{height - pad + 4}" font-size="11">{y0:.4g}</text></svg>'
    )


def history_plots(history: list[dict]) -> str:
    series: dict[str, dict[int, float]] = {}
    for r in history:
        if r.get("step") is not None and isinstance(r.get("value"), (int, float)):
            series.setdefault(r["metric"], {})[int(r["step"])] = float(r["value"])  # the latest line per step wins
    parts = []
    for metric, by_step in sorted(series.items()):
        if len(by_step) >= 2:
            parts.append(f"<figure><figcaption>{html.escape(metric)}</figcaption>{_svg_plot(sorted(by_step.items()))}</figure>")
    return "".join(parts)


def _sample_clips(ev, frames: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A few generated and real clips at the evaluation resolution."""
    video = [g for g in ev.groups if g.spec.frames]
    fake_refs = video[0].fake_refs if video else ev.fake.plan(GRID_CLIPS, frames, 0)
    fake = ev.fake.load(fake_refs[:GRID_CLIPS], frames, ev.size)
    real = None
    if ev.real is not None:
        refs = video[0].real.refs if video and video[0].real is not None else ev.real.plan(GRID_CLIPS, frames, 0)
        real = ev.real.load(refs[:GRID_CLIPS], frames, ev.size)
    return fake, real


def _neighbours(ev) -> str:
    groups = [
        g
        for g in ev.groups
        if g.spec.frames
        and g.real is not None
        and g.real.stats.features is not None
        and g.fake.features is not None
        and len(g.real.stats.features) > 1
    ]
    if not groups:
        return "<p>No per-clip features were kept for both sides (ask for a video metric such as fd_effnet).</p>"
    g = sorted(groups, key=lambda g: g.spec.info.extractor != "effnet-lite0")[0]
    frames = g.spec.frames
    real_rows, fake_rows = g.real.stats.features, g.fake.features
    idx, dist = nearest_neighbours(fake_rows[:NEIGHBOURS], real_rows)
    typical = float(np.median(kth_neighbour_radii(real_rows, 1).numpy()))
    fake_clips = ev.fake.load(g.fake_refs[: len(idx)], frames, ev.size)
    real_clips = ev.real.load(g.real.refs[idx], frames, ev.size)
    rows = []
    for i, (f, r, d) in enumerate(zip(fake_clips, real_clips, dist)):
        ratio = d / typical if typical > 0 else float("inf")
        flag = " <b>possible copy</b>" if ratio < COPY_RATIO else ""
        rows.append(
            f"<tr><td>{_img(_gif(f, grid=False), f'generated {i}')}</td><td>{_img(_gif(r, grid=False), 'nearest real')}</td>"
            f"<td>{d:.4g}</td><td>{ratio:.2f}{flag}</td></tr>"
        )
    return (
        f"<p>Feature space: {html.escape(g.spec.info.extractor)} ({frames} frames). Typical distance from a real clip to its nearest "
        f"other real clip: {typical:.4g} (median). Ratios below {COPY_RATIO} are flagged.</p>"
        "<table><tr><th>generated</th><th>nearest real</th><th>distance</th><th>/ typical real-real</th></tr>" + "".join(rows) + "</table>"
    )


def write_report(path, ev, history: list[dict], title: str = "") -> Path:
    """Write report.html for one evaluation (`evaluate.Evaluation`) and the metrics.jsonl history."""
    path = Path(path)
    frames = next((g.spec.frames for g in ev.groups if g.spec.frames), None) or min(
        16, ev.fake.length or 16, (ev.real.length if ev.real is not None and ev.real.length else 16)
    )
    rows = []
    for r in ev.records:
        alarm = f'<span class="alarm">{html.escape(r["alarm"])}</span>' if r.get("alarm") else ""
        std = f" &plusmn; {r['std']:.3g}" if r.get("std") is not None else ""
        rows.append(
            f"<tr><td>{html.escape(r['metric'])}</td><td>{r['value']:.6g}{std}</td><td>{r['n']}</td><td>{r.get('n_real') or ''}</td>"
            f"<td>{'' if r.get('step') is None else r['step']}</td><td>{html.escape(r['extractor'])}</td><td>{alarm}</td></tr>"
        )
    protocols = {}
    for r in ev.records:
        protocols.setdefault(r["requested"], r["protocol"])
    fake, real = _sample_clips(ev, frames)
    samples = f"<div class='pair'><figure><figcaption>generated</figcaption>{_img(_gif(fake), 'generated clips')}</figure>"
    if real is not None:
        samples += f"<figure><figcaption>real</figcaption>{_img(_gif(real), 'real clips')}</figure>"
    samples += "</div>"
    plots = history_plots(history) or "<p>Only one step evaluated so far (evaluate with --all-checkpoints, or train with --eval-every).</p>"
    body = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>vidgan evaluation: {html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
.alarm{{color:#b00;font-weight:bold}} figure{{display:inline-block;margin:0 1em 1em 0}} img{{image-rendering:pixelated;min-width:96px}} pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head>
<body><h1>vidgan evaluation</h1><p>{html.escape(title)} &mdash; {html.escape(ev.records[0]["time"] if ev.records else "")}</p>
<h2>Metrics</h2><table id="metrics"><tr><th>metric</th><th>value</th><th>n</th><th>n real</th><th>step</th><th>features</th><th></th></tr>{"".join(rows)}</table>
<h2>Real and generated clips</h2>{samples}
<h2>Nearest real clip (memorisation check)</h2>{_neighbours(ev)}
<h2>Over training</h2>{plots}
<h2>Protocol</h2><pre id="protocol">{html.escape(json.dumps(protocols, indent=1, default=str))}</pre>
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(body)
    temporary.replace(path)
    return path

"""`vidgan evaluate` on a tiny trained run, folders of videos and prepared datasets; evaluation during training."""

import base64
import json
from html.parser import HTMLParser

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from helpers import tiny_config, torch_threads
from vidgan.metrics.cli import evaluate
from vidgan.training.loop import train

app = typer.Typer()
app.command("evaluate")(evaluate)
app.command("noop")(lambda: None)  # two commands, so `evaluate` is a sub-command as in the real app


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDGAN_CACHE_DIR", str(tmp_path / "cache"))  # never the user's ~/.cache


@pytest.fixture(scope="module")
def tiny_run(mnist_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "run"
    cfg = tiny_config(mnist_data, **{"train.steps": 4, "train.checkpoint_every": 2, "train.log_every": 2})
    with torch_threads(1):
        train(cfg, run, progress=False, log=lambda s: None)
    return run


class _Report(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells, self.images, self.svgs, self.protocol, self._in = [], [], 0, "", None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "svg":
            self.svgs += 1
        self._in = attrs.get("id") if tag == "pre" else ("td" if tag == "td" else self._in)

    def handle_data(self, data):
        if self._in == "protocol":
            self.protocol += data
        elif self._in == "td":
            self.cells.append(data)

    def handle_endtag(self, tag):
        if tag in ("pre", "td"):
            self._in = None


def _read_report(path) -> _Report:
    parser = _Report()
    parser.feed(path.read_text())
    return parser


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_evaluates_every_checkpoint_and_writes_metrics_and_report(tiny_run, mnist_data):
    args = [
        "evaluate",
        str(tiny_run),
        "--real",
        str(mnist_data),
        "--metrics",
        "fd_effnet,kd_effnet,pr,diversity",
        "--n",
        "8",
        "--effnet-size",
        "32",
        "--all-checkpoints",
        "--no-progress",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "fd_effnet8_8f_32px:" in result.output and "report.html" in result.output

    lines = _lines(tiny_run / "metrics.jsonl")
    by_step = {}
    for r in lines:
        by_step.setdefault(r["step"], set()).add(r["metric"])
        assert set(r) >= {"metric", "value", "protocol", "n", "extractor", "time", "step"}
        assert r["n"] == 8 and r["extractor"] == "effnet-lite0"
        assert r["protocol"]["frames"] == 8 and r["protocol"]["extractor"]["input"] == "32x32"
        assert r["protocol"]["fake"]["step"] == r["step"] and r["protocol"]["real"]["path"] == str(mnist_data)
    assert sorted(by_step) == [2, 4]
    assert by_step[4] == {
        "fd_effnet8_8f_32px",
        "kd_effnet8_8f_32px",
        "diversity8_8f_32px",
        "diversity8_8f_32px_near_duplicates",
        *(f"pr8_8f_32px_{k}" for k in ("precision", "recall", "density", "coverage")),
    }
    # the real pass ran once: the second checkpoint reused the cached statistics
    hits = [r["protocol"]["real_cache"]["hit"] for r in lines if r["metric"] == "fd_effnet8_8f_32px"]
    assert hits == [False, True]

    report = _read_report(tiny_run / "report.html")
    assert "fd_effnet8_8f_32px" in report.cells and "kd_effnet8_8f_32px" in report.cells
    gifs = [src for src in report.images if src.startswith("data:image/gif;base64,")]
    assert len(gifs) >= 2 + 2 * 4  # real and generated grids, 4 generated clips with their nearest real clip
    assert all(base64.b64decode(src.split(",", 1)[1])[:6] == b"GIF89a" for src in gifs)
    assert report.svgs >= 1  # metric over the two checkpoints
    protocol = json.loads(report.protocol)
    assert protocol["fd_effnet"]["extractor"]["name"] == "effnet-lite0"


def test_cli_errors_are_one_line(tiny_run, mnist_data, tmp_path):
    runner = CliRunner()
    cases = [
        (["evaluate", str(tiny_run), "--real", str(mnist_data), "--metrics", "fvd"], "--i3d-weights"),
        (
            [
                "evaluate",
                str(tiny_run),
                "--real",
                str(mnist_data),
                "--metrics",
                "fvd2048_16f",
                "--i3d-weights",
                str(tmp_path / "missing.pt"),
            ],
            "needs clips of 16 frames",
        ),
        (["evaluate", str(tiny_run), "--real", str(mnist_data), "--metrics", "fd_vgg"], "unknown metric"),
        (["evaluate", str(tmp_path / "nothing"), "--real", str(mnist_data)], "not found"),
        (["evaluate", str(tiny_run), "--metrics", "pr"], "pass --real"),
    ]
    for args, words in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert words in result.output and result.output.startswith("error: ") and result.output.count("\n") == 1, result.output


def test_fvd_with_user_weights_and_n_in_the_name(tiny_run, mnist_data, tmp_path):
    import torch

    from vidgan.metrics.fvd import InceptionI3d, save_i3d

    torch.manual_seed(0)
    save_i3d(InceptionI3d(width=0.0625).eval(), tmp_path / "i3d.safetensors")
    out = tmp_path / "out"
    args = [
        "evaluate",
        str(tiny_run),
        "--real",
        str(mnist_data),
        "--metrics",
        "fvd2048_2f",
        "--n",
        "2",
        "--i3d-weights",
        str(tmp_path / "i3d.safetensors"),
        "--out",
        str(out),
        "--no-progress",
        "--no-report",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (line,) = _lines(out / "metrics.jsonl")
    assert (line["metric"], line["requested"], line["n"], line["extractor"]) == ("fvd2_2f", "fvd2048_2f", 2, "i3d")
    assert line["value"] > 0 and line["protocol"]["extractor"]["weights_sha256"]
    assert not (out / "report.html").exists()


def test_folders_and_datasets_on_either_side(tiny_run, mnist_data, tmp_path):
    from vidgan.data.clips import ClipDataset
    from vidgan.data.video_write import write_video
    from vidgan.generation import generate
    from vidgan.metrics.evaluate import EvalOptions
    from vidgan.metrics.evaluate import evaluate as run_evaluate

    generated = tmp_path / "generated"
    generate(tiny_run, generated, {"n": 6, "seed": 0}, fmt="mp4")  # also writes grid.gif / grid.mp4, which are not clips
    real_videos = tmp_path / "real_videos"
    for i, clip in enumerate(ClipDataset(mnist_data).get_batch(range(6))[0].numpy()):
        write_video(real_videos / f"real_{i}.mp4", clip, fps=8)
    write_video(real_videos / "short.mp4", np.zeros((3, 32, 32, 1), np.uint8), fps=8)  # too short: dropped, counted

    options = EvalOptions(metrics="fd_effnet,diversity", n=6, effnet_size=32, progress=False)
    folders = run_evaluate(generated, real_videos, options, out=tmp_path / "folders", log=lambda s: None)
    first = folders.records[0]
    assert first["metric"] == "fd_effnet6_8f_32px" and first["n"] == 6 and first["n_real"] == 6
    assert first["protocol"]["fake"] == {"kind": "folder", "path": str(generated), "videos": 6, "dropped_too_short": 0}
    assert first["protocol"]["real"]["dropped_too_short"] == 1
    assert (tmp_path / "folders" / "report.html").is_file() and (tmp_path / "folders" / "metrics.jsonl").is_file()

    # a prepared dataset as the generated side, a folder of videos as the real side, and the reverse
    data_vs_folder = run_evaluate(mnist_data, real_videos, options, out=tmp_path / "d", log=lambda s: None, report=False).records[0]
    folder_vs_data = run_evaluate(real_videos, mnist_data, options, out=tmp_path / "f", log=lambda s: None, report=False).records[0]
    assert data_vs_folder["protocol"]["fake"]["kind"] == "dataset" and folder_vs_data["protocol"]["real"]["kind"] == "dataset"
    assert np.isfinite(data_vs_folder["value"]) and np.isfinite(folder_vs_data["value"])


def test_eval_every_writes_metrics_during_training(mnist_data, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(
        mnist_data,
        **{
            "train.steps": 4,
            "train.eval_every": 2,
            "train.eval_n": 8,
            "train.eval_image_size": 32,
            "train.eval_metrics": "fd_effnet,diversity",
        },
    )
    printed = []
    train(cfg, run, progress=False, log=printed.append)
    lines = _lines(run / "metrics.jsonl")
    assert [(r["step"], r["metric"]) for r in lines] == [
        (step, name) for step in (2, 4) for name in ("fd_effnet8_8f_32px", "diversity8_8f_32px", "diversity8_8f_32px_near_duplicates")
    ]
    assert all(r["n"] == 8 and r["protocol"]["fake"]["weights"] == "EMA generator during training" for r in lines)
    assert any(p.startswith("step 2: fd_effnet8_8f_32px") for p in printed)
    assert all(np.isfinite(r["value"]) for r in lines)


def test_fid_and_is_from_frames_with_user_inception_weights(mnist_data, tmp_path):
    import torch

    from vidgan.data.clips import ClipDataset
    from vidgan.metrics.evaluate import EvalOptions, compute
    from vidgan.metrics.fid import InceptionV3, save_inception
    from vidgan.metrics.sources import ArraySource

    torch.manual_seed(0)
    net = InceptionV3(width=0.0625).eval()
    for m in net.modules():  # variance-preserving weights, so that a narrow random network still tells images apart
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight)
    with torch.no_grad():
        net.fc.weight.mul_(100.0)
    save_inception(net, tmp_path / "inception.safetensors")
    clips = ClipDataset(mnist_data).get_batch(range(40))[0].numpy()
    noise = np.random.default_rng(0).integers(0, 256, size=clips[:20].shape, dtype=np.uint8)
    options = EvalOptions(metrics="fid,is", n=20, inception_weights=tmp_path / "inception.safetensors", progress=False)
    real = {r["metric"]: r for r in compute(ArraySource(clips[:20]), ArraySource(clips[20:]), options).records}
    options.metrics = "fid"
    fake = {r["metric"]: r for r in compute(ArraySource(noise), ArraySource(clips[20:]), options).records}
    assert set(real) == {"fid20", "is20"}
    assert real["fid20"]["value"] < fake["fid20"]["value"]
    assert real["is20"]["value"] > 1.0 and real["is20"]["n_real"] is None and real["is20"]["protocol"]["splits"] == 10
    assert real["fid20"]["protocol"]["clips"] == "1 frame at a seeded random time per clip" and real["fid20"]["n_real"] == 20

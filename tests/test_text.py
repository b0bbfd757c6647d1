"""Text conditioning: offline MiniLM embeddings, captions from datasets, text-conditional runs."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from helpers import tiny_config
from vidgan import text as text_module
from vidgan.cli import app
from vidgan.data.clips import ClipDataset
from vidgan.data.prepare import PrepareSettings, prepare
from vidgan.data.video_write import write_video
from vidgan.pipeline import VideoPipeline
from vidgan.text import TextEncoder, TextModelError, embed_captions
from vidgan.training.loop import train


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder()


def test_minilm_embeddings_load_offline_and_mean_what_they_say(encoder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    v = encoder(["a red circle moving left slowly", "a red disc moving to the left", "a blue square moving up quickly"])
    assert v.shape == (3, 384)
    assert torch.allclose(v.norm(dim=1), torch.ones(3), atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1  # paraphrase closer than a different scene
    assert torch.allclose(encoder(["a red circle moving left slowly"])[0], v[0], atol=1e-5)  # padding: last bits only
    captions = ["b", "a", "b", "a", "c"]
    table = embed_captions(captions, encoder)
    assert torch.equal(table[0], table[2]) and torch.equal(table[4], encoder(["c"])[0])  # one sentence per pass: exact


def test_missing_text_model_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(text_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TextModelError, match="requirements-text.txt"):
        TextEncoder()
    with pytest.raises(TextModelError, match="not a model folder"):
        TextEncoder(tmp_path)


def test_prepare_reads_captions_json_and_sidecar_files(tmp_path):
    src = tmp_path / "videos"
    clip = np.full((8, 16, 16, 3), 90, np.uint8)
    write_video(src / "a.mp4", clip, fps=8)
    write_video(src / "b.mp4", clip, fps=8)
    write_video(src / "c.mp4", clip, fps=8)
    (src / "captions.json").write_text('{"a.mp4": "a grey field"}')
    (src / "b.txt").write_text("a quiet grey screen\nsecond line ignored\n")
    prepare(str(src), tmp_path / "d", PrepareSettings(size=16, frames=8), progress=False, log=lambda s: None)
    captions = {c["source"]: c.get("caption") for c in ClipDataset(tmp_path / "d").clips}
    assert captions == {"a.mp4": "a grey field", "b.mp4": "a quiet grey screen", "c.mp4": None}
    (src / "captions.json").write_text("{not json")
    with pytest.raises(Exception, match="captions.json: not valid JSON"):
        prepare(str(src), tmp_path / "e", PrepareSettings(size=16, frames=8), progress=False, log=lambda s: None)


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes") / "data"
    prepare("builtin:shapes", out, PrepareSettings(size=16, frames=8), n=48, seed=0, progress=False, log=lambda s: None)
    return out


def test_text_conditional_run_follows_the_sentence_input(shapes_data, tmp_path):
    run = tmp_path / "txt"
    train(tiny_config(shapes_data, **{"train.steps": 3, "model.condition": "text"}), run, progress=False, log=lambda s: None)
    pipe = VideoPipeline.from_pretrained(run)
    red = pipe(n=2, seed=0, text="a red circle moving left slowly")
    blue = pipe(n=2, seed=0, text="a blue square moving up quickly")
    assert red.shape == (2, 8, 16, 16, 3) and not np.array_equal(red, blue)
    assert np.array_equal(red, pipe(n=2, seed=0, text=["a red circle moving left slowly"] * 2))
    with pytest.raises(ValueError, match="text-conditional"):
        pipe(n=1)
    result = CliRunner().invoke(
        app, ["generate", str(run), "--n", "1", "--text", "a green triangle", "--out", str(tmp_path / "g"), "--no-grid"]
    )
    assert result.exit_code == 0, result.output


def test_text_condition_needs_captions(mnist_data, tmp_path, monkeypatch):
    import vidgan.data.clips as clips

    real_init = clips.ClipDataset.__init__

    def without_captions(self, root):
        real_init(self, root)
        self.clips = [{k: v for k, v in c.items() if k != "caption"} for c in self.clips]

    monkeypatch.setattr(clips.ClipDataset, "__init__", without_captions)
    with pytest.raises(ValueError, match="no caption"):
        train(tiny_config(mnist_data, **{"model.condition": "text"}), tmp_path / "r", progress=False)

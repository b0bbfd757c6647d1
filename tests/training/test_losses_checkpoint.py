import math

import pytest
import torch
from safetensors.torch import load_file

from vidgan.run import CheckpointError, Run, load_state, load_weights
from vidgan.training import checkpoint as ckpt
from vidgan.training.losses import d_loss_nonsat, g_loss_nonsat, get_loss


def test_nonsat_losses_match_hand_computed_values():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 3.0])
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    want_d = -(math.log(sig(2)) + math.log(sig(0))) / 2 - (math.log(1 - sig(-1)) + math.log(1 - sig(3))) / 2
    assert d_loss_nonsat(real, fake).item() == pytest.approx(want_d, rel=1e-6)
    assert g_loss_nonsat(fake).item() == pytest.approx(-(math.log(sig(-1)) + math.log(sig(3))) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="available: nonsat"):
        get_loss("wasserstein?")


def test_optimizer_state_round_trips_through_safetensors(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 3)).pow(2).sum().backward()
        opt.step()
    tensors, meta = ckpt.optimizer_to_flat(opt, "opt")
    path = Run(tmp_path).save_checkpoint(3, {"model": model.state_dict()}, tensors, {"opt": meta})
    state, loaded = load_state(path)
    clone = torch.nn.Linear(3, 2)
    opt2 = torch.optim.Adam(clone.parameters(), lr=0.1)
    ckpt.optimizer_from_flat(opt2, "opt", loaded, state["opt"])
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for idx in a["state"]:
        for key in a["state"][idx]:
            assert torch.equal(torch.as_tensor(a["state"][idx][key]), torch.as_tensor(b["state"][idx][key]))
    assert set(load_file(str(path / "model.safetensors"))) == {"weight", "bias"}


def test_checkpoints_are_atomic_and_pruned(tmp_path):
    w = {"g": {"x": torch.zeros(2)}}
    for step in (10, 20, 30, 40):
        Run(tmp_path).save_checkpoint(step, w, {}, {}, keep=2)
    assert [p.name for p in Run(tmp_path).checkpoints()] == ["step_000000030", "step_000000040"]
    # A checkpoint folder without state.json (half written by older tools, or by hand) is never trusted.
    (tmp_path / "checkpoints" / "step_000000050").mkdir()
    (tmp_path / "checkpoints" / ".tmp-step_000000060-999999").mkdir()
    assert Run(tmp_path).latest().name == "step_000000040"
    Run(tmp_path).save_checkpoint(60, w, {}, {}, keep=2)
    assert not (tmp_path / "checkpoints" / ".tmp-step_000000060-999999").exists()
    with pytest.raises(CheckpointError, match="incomplete"):
        load_weights(Run(tmp_path).latest(), "discriminator")

"""Training: the tiny network learns a fixed batch; checkpoints resume exactly; `train` runs end to end."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ros2_stereo_depth.config import get_config
from ros2_stereo_depth.data.synthetic import SceneParams, SyntheticStereo
from ros2_stereo_depth.fileio import write_rgb
from ros2_stereo_depth.model import StereoNet
from ros2_stereo_depth.tools.train import TrainSettings, train
from ros2_stereo_depth.pair import StereoPair
from ros2_stereo_depth.training.batches import collate
from ros2_stereo_depth.training.checkpoint import load_checkpoint, save_checkpoint
from ros2_stereo_depth.training.losses import self_supervised_loss, supervised_loss

MAX_DISPARITY = 32


@pytest.fixture(scope="module")
def batch():
    # no repeats or thin structures: 30 self-supervised steps cannot resolve those ambiguities
    params = SceneParams(64, 96, 30.0, repetitive_prob=0.0, thin_structure_prob=0.0)
    source = SyntheticStereo(params, seed=1, photometric=None)
    return collate([StereoPair(s.left, s.right, s.disparity_px, ~s.occluded) for s in (source[0], source[1])],
                   MAX_DISPARITY)


def tiny_net(seed=0):
    torch.manual_seed(seed)
    return StereoNet(get_config("tiny").with_overrides(max_disparity=MAX_DISPARITY)).train()


def fit(net, batch, loss_fn, steps, lr=2e-3):
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn(net, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def supervised(net, batch):
    return supervised_loss(net(batch["left"], batch["right"]), batch["disparity"], batch["valid"])


def self_supervised(net, batch):
    return self_supervised_loss(net, batch["left"], batch["right"], net(batch["left"], batch["right"]))


def test_supervised_training_lowers_the_loss(batch):
    losses = fit(tiny_net(), batch, supervised, 30)
    assert np.mean(losses[-5:]) < 0.3 * np.mean(losses[:3]), losses


def test_self_supervised_training_lowers_the_loss(batch):
    losses = fit(tiny_net(), batch, self_supervised, 30)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3]), losses


def test_checkpoint_restores_step_weights_and_optimizer_exactly(tmp_path, batch):
    net = tiny_net()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=10)
    for _ in range(2):
        optimizer.zero_grad()
        supervised(net, batch).backward()
        optimizer.step()
        scheduler.step()
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, net, optimizer, scheduler, 2, {"note": "x"})

    restored = tiny_net(seed=1)  # different initial weights: everything must come from the file
    restored_optimizer = torch.optim.AdamW(restored.parameters(), lr=1e-3)
    restored_scheduler = torch.optim.lr_scheduler.OneCycleLR(restored_optimizer, max_lr=1e-3, total_steps=10)
    meta = load_checkpoint(path, restored, restored_optimizer, restored_scheduler)
    assert meta["step"] == 2 and meta["note"] == "x"
    for (name, a), b in zip(net.state_dict().items(), restored.state_dict().values()):
        assert torch.equal(a, b), name
    assert restored_scheduler.get_last_lr() == scheduler.get_last_lr()
    # One more identical step on both: equal only if the Adam moments and step counts were restored.
    for model, opt in ((net, optimizer), (restored, restored_optimizer)):
        opt.zero_grad()
        supervised(model, batch).backward()
        opt.step()
    for (name, a), b in zip(net.state_dict().items(), restored.state_dict().values()):
        assert torch.equal(a, b), name


def settings(**changes):
    base = dict(config="tiny", steps=2, batch_size=1, crop_height=64, crop_width=96, max_disparity=MAX_DISPARITY,
                workers=0, log_every=1, image_every=1, checkpoint_every=1)
    base.update(changes)
    return TrainSettings(**base)


def test_train_command_writes_weights_and_resumes(tmp_path, capsys):
    torch.set_num_threads(1)
    final = train(settings(), tmp_path)
    first = load_file(str(final))
    assert json.loads(final.with_suffix(".json").read_text())["info"]["steps"] == 2
    # Resuming a finished run restores step 2 and takes no step: the same weights come out.
    again = train(settings(), tmp_path, resume=True)
    assert "resumed from" in capsys.readouterr().out
    second = load_file(str(again))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_train_self_supervised_on_a_plain_folder(tmp_path):
    torch.set_num_threads(1)
    source = SyntheticStereo(SceneParams(80, 112, 20.0), seed=3)
    for i in range(2):
        s = source[i]
        (tmp_path / "data" / "left").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "right").mkdir(parents=True, exist_ok=True)
        write_rgb(tmp_path / "data" / "left" / f"{i}.png", s.left)
        write_rgb(tmp_path / "data" / "right" / f"{i}.png", s.right)
    # 3 steps over a 2-pair dataset: the loader must start a new epoch rather than stop.
    final = train(settings(data=str(tmp_path / "data"), mode="self-supervised", steps=3), tmp_path / "run")
    assert final.is_file()

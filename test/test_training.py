"""Training: the tiny network learns a fixed batch; checkpoints and resumes are exact (also mid-stage and
across a change of search range); the learning-rate schedule; stages from YAML; Ctrl-C; two processes."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ros2_stereo_depth.artifacts.sidecar import SidecarError
from ros2_stereo_depth.cli import main
from ros2_stereo_depth.config import get_config
from ros2_stereo_depth.data.batches import collate
from ros2_stereo_depth.data.synthetic import SceneParams, SyntheticStereo
from ros2_stereo_depth.fileio import write_rgb
from ros2_stereo_depth.model import StereoNet
from ros2_stereo_depth.pair import StereoPair
from ros2_stereo_depth.training.checkpoint import load_checkpoint, save_checkpoint
from ros2_stereo_depth.training.datasets import StepBatches, synthetic_source
from ros2_stereo_depth.training.loop import train
from ros2_stereo_depth.training.losses import self_supervised_loss, supervised_loss
from ros2_stereo_depth.training.lr_schedule import learning_rate
from ros2_stereo_depth.training.settings import TrainSettings, load_schedule

from torch_threads import torch_threads

MAX_DISPARITY = 32


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread per test (2 cores shared with other jobs), restored afterwards."""
    with torch_threads(1):
        yield


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
    for _ in range(2):
        optimizer.zero_grad()
        supervised(net, batch).backward()
        optimizer.step()
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, net, optimizer, 2, {"note": "x"})

    restored = tiny_net(seed=1)  # different initial weights: everything must come from the file
    restored_optimizer = torch.optim.AdamW(restored.parameters(), lr=1e-3)
    meta = load_checkpoint(path, restored, restored_optimizer)
    assert meta["step"] == 2 and meta["note"] == "x"
    for (name, a), b in zip(net.state_dict().items(), restored.state_dict().values()):
        assert torch.equal(a, b), name
    # The sidecar holds the checkpoint's sha256: a modified file is refused.
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    tampered = tmp_path / "tampered.safetensors"
    tampered.write_bytes(bytes(data))
    tampered.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    with pytest.raises(SidecarError, match="does not match its sidecar"):
        load_checkpoint(tampered, tiny_net(), torch.optim.AdamW(tiny_net().parameters()))
    # One more identical step on both: equal only if the Adam moments and step counts were restored.
    for model, opt in ((net, optimizer), (restored, restored_optimizer)):
        opt.zero_grad()
        supervised(model, batch).backward()
        opt.step()
    for (name, a), b in zip(net.state_dict().items(), restored.state_dict().values()):
        assert torch.equal(a, b), name


def test_learning_rate_schedule_and_its_extension():
    # 100-step stage, lr 1e-3, final factor 0.01, warmup 5: rises, peaks, decays to 1e-5 at the last step.
    lr = [learning_rate(k, 0, 100, 1e-3, 0.01, 5) for k in range(100)]
    assert lr[0] == pytest.approx(1e-3 / 6)  # warmup: (0 + 1) / (5 + 1) of the cosine's start
    assert lr[4] < lr[5] and max(lr) == lr[5] and lr[99] == pytest.approx(1e-5)
    assert all(a >= b for a, b in zip(lr[5:], lr[6:]))
    # Halfway through the cosine: (lr + final) / 2.
    assert learning_rate(50, 0, 101, 1e-3, 0.01, 0) == pytest.approx((1e-3 + 1e-5) / 2)
    # Extending a finished 100-step stage to 199 steps continues on the stretched cosine: mid-way value at
    # step 99, the final lr at the new last step. A later stage counts from its own start.
    assert learning_rate(99, 0, 199, 1e-3, 0.01, 0) == pytest.approx((1e-3 + 1e-5) / 2)
    assert learning_rate(198, 0, 199, 1e-3, 0.01, 0) == pytest.approx(1e-5)
    assert learning_rate(100, 100, 200, 5e-4, 0.01, 0) == pytest.approx(5e-4)


def test_step_batches_split_positions_between_processes():
    single = list(StepBatches(3, 5, 2, rank=0, world=1))
    ranks = [list(StepBatches(3, 5, 1, rank=r, world=2)) for r in range(2)]
    assert single == [[6, 7], [8, 9]]
    assert ranks == [[[6], [8]], [[7], [9]]]  # two processes of batch 1 see the same samples as one of batch 2


def settings(**changes):
    base = dict(config="tiny", steps=4, batch_size=1, crop_height=64, crop_width=96, max_disparity=MAX_DISPARITY,
                workers=0, log_every=1, image_every=2, checkpoint_every=100, warmup_steps=0, threads=1,
                textures="none")  # procedural scenes: loading the photo bank costs seconds per run
    base.update(changes)
    return TrainSettings(**base)


def weights_of(path):
    return load_file(str(path))


def assert_same_weights(a, b):
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), \
        [k for k in a if not torch.equal(a[k], b[k])][:3]


def test_resume_mid_stage_and_across_stages_is_exact(tmp_path, capsys):
    """Two stages (the second with another search range and crop). One run straight through equals a run
    stopped mid-stage 1 (step 1), resumed and stopped mid-stage 2 (step 4), resumed to the end."""
    stages = [settings(steps=2), settings(steps=3, max_disparity=48, crop_height=64, crop_width=128, lr=5e-4)]
    straight = train(stages, tmp_path / "a")
    assert straight.step == 5 and not straight.interrupted and len(straight.losses) == 5
    first = train(stages, tmp_path / "b", stop_at=1)
    assert first.step == 1 and first.interrupted
    assert "stopped at step 1 of 5" in capsys.readouterr().out
    second = train(stages, tmp_path / "b", resume=True, stop_at=4)
    assert second.step == 4 and "resumed from" in capsys.readouterr().out
    third = train(stages, tmp_path / "b", resume=True)
    assert third.step == 5 and not third.interrupted
    # The same losses step by step, and bit-identical weights.
    assert first.losses + second.losses + third.losses == straight.losses
    assert_same_weights(weights_of(straight.weights), weights_of(third.weights))
    info = json.loads(third.weights.with_suffix(".json").read_text())
    assert info["kind"] == "weights" and info["info"]["steps"] == 5
    assert info["info"]["stages"][1]["crop_width"] == 128 and info["info"]["stages"][1]["max_disparity"] == 48
    checkpoint = json.loads((tmp_path / "b" / "checkpoint.json").read_text())
    assert checkpoint["kind"] == "checkpoint" and checkpoint["step"] == 5 and checkpoint["stage"] == 1


def test_resuming_with_more_steps_extends_the_schedule(tmp_path):
    """A 2-step run resumed with --steps 5 continues on the schedule of a run planned for 5 steps."""
    planned = train([settings(steps=5)], tmp_path / "planned")
    short = train([settings(steps=2)], tmp_path / "short")
    extended = train([settings(steps=5)], tmp_path / "short", resume=True)
    assert short.learning_rates == [1e-3, pytest.approx(1e-5)]  # its own cosine ended at the final lr
    assert extended.step == 5 and extended.learning_rates == pytest.approx(planned.learning_rates[2:])
    assert extended.learning_rates[0] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + np.cos(np.pi * 2 / 4)))


def test_schedule_file_gives_stages_on_top_of_the_flags(tmp_path):
    path = tmp_path / "stages.yaml"
    path.write_text("lr: 2.0e-3\nstages:\n  - {steps: 10, crop: [64, 96]}\n"
                    "  - {steps: 5, max_disparity: 64, lr: 1.0e-4, data: /somewhere, mode: self-supervised}\n")
    stages = load_schedule(path, TrainSettings(config="tiny", batch_size=2))
    assert [s.steps for s in stages] == [10, 5] and [s.lr for s in stages] == [2e-3, 1e-4]
    assert (stages[0].crop_height, stages[0].crop_width, stages[0].batch_size) == (64, 96, 2)
    assert stages[1].data == "/somewhere" and stages[1].mode == "self-supervised" and stages[1].max_disparity == 64
    path.write_text("stages:\n  - {steps: 10, crops: [64, 96]}\n")
    with pytest.raises(ValueError, match="stage 0: unknown training settings \\['crops'\\]"):
        load_schedule(path, TrainSettings())


def test_train_command_with_a_schedule(tmp_path, capsys):
    path = tmp_path / "stages.yaml"
    path.write_text("stages:\n  - {steps: 1, crop: [64, 96], max_disparity: 32}\n  - {steps: 1, crop: [64, 64]}\n")
    assert main(["train", "--config", "tiny", "--schedule", str(path), "--out", str(tmp_path / "run"),
                 "--batch-size", "1", "--workers", "0", "--threads", "1", "--max-disparity", "32",
                 "--textures", "none"]) == 0
    assert "after 2 steps" in capsys.readouterr().out
    recorded = json.loads((tmp_path / "run" / "settings.json").read_text())["stages"]
    assert [(s["crop_height"], s["crop_width"], s["batch_size"]) for s in recorded] == [(64, 96, 1), (64, 64, 1)]


def test_train_self_supervised_on_a_plain_folder(tmp_path):
    source = SyntheticStereo(SceneParams(80, 112, 20.0), seed=3)
    for i in range(2):
        s = source[i]
        for side, image in (("left", s.left), ("right", s.right)):
            (tmp_path / "data" / side).mkdir(parents=True, exist_ok=True)
            write_rgb(tmp_path / "data" / side / f"{i}.png", image)
    # 3 steps over a 2-pair dataset: the sampler must start a new epoch rather than stop.
    result = train([settings(data=str(tmp_path / "data"), mode="self-supervised", steps=3)], tmp_path / "run")
    assert result.step == 3 and all(np.isfinite(result.losses))


def run_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return env


def test_ctrl_c_writes_a_checkpoint_and_a_resume_hint(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "ros2_stereo_depth", "train", "--config", "tiny", "--steps", "100000",
               "--out", str(out), "--batch-size", "1", "--crop-height", "64", "--crop-width", "96",
               "--max-disparity", "32", "--workers", "1", "--threads", "1", "--checkpoint-every", "1",
               "--textures", "none"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=run_env())
    try:
        deadline = time.monotonic() + 180
        while not (out / "checkpoint.json").is_file() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)  # training is under way once the first step's checkpoint is there
        first = json.loads((out / "checkpoint.json").read_text())["step"]
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    meta = json.loads((out / "checkpoint.json").read_text())
    hint = [line for line in output.splitlines() if line.startswith("stopped at step")]
    assert len(hint) == 1 and 1 <= first <= meta["step"] < 100000, output
    assert hint[0].startswith(f"stopped at step {meta['step']} of 100000, checkpoint {out / 'checkpoint.safetensors'}")
    assert hint[0].endswith("--checkpoint-every 1 --textures none --resume") and "resume with: stereo-depth train" in hint[0]


def test_two_processes_under_torchrun(tmp_path):
    """gloo on CPU: two processes of batch 1 train on different samples and average their gradients, so the
    result differs from one process of batch 1; the weights record the world size."""
    common = ["--config", "tiny", "--steps", "2", "--batch-size", "1", "--crop-height", "64", "--crop-width", "96",
              "--max-disparity", "32", "--workers", "0", "--threads", "1", "--textures", "none"]
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                    "-m", "ros2_stereo_depth", "train", *common, "--out", str(tmp_path / "ddp")],
                   check=True, env=run_env(), timeout=300, capture_output=True)
    single = train([settings(steps=2)], tmp_path / "single")
    ddp = tmp_path / "ddp" / "tiny.safetensors"
    assert json.loads(ddp.with_suffix(".json").read_text())["info"]["world_size"] == 2
    a, b = weights_of(ddp), weights_of(single.weights)
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)


def test_synthetic_training_data_uses_the_packaged_photos_unless_told_not_to():
    """`textures: photos` (the default) hands the generator the photo bank, whose photo scenes differ
    from the procedural ones; `none` trains on procedural scenes only."""
    with_photos = synthetic_source(settings(textures="photos"), stage=0)
    procedural = synthetic_source(settings(textures="none"), stage=0)
    assert TrainSettings().textures == "photos"
    assert procedural.textures is None and len(with_photos.textures) >= 10
    assert not np.array_equal(with_photos[0].left, procedural[0].left)
    with pytest.raises(ValueError, match="unknown textures"):
        settings(textures="kitti")


@pytest.mark.timeout(300)
def test_weights_sidecar_records_the_photo_files_a_run_may_read(tmp_path):
    """Provenance of shipped weights: a run on photo scenes lists every texture file with its SHA-256
    (data/textures.py texture_record); a procedural-only run lists none. The photo run has a data worker:
    loading the photos starts OpenCV's thread pool in this process, and a worker forked after it once hung
    on its first OpenCV call (the timeout turns such a hang into a failure)."""
    from ros2_stereo_depth.data.textures import texture_record

    photos = train([settings(steps=2, textures="photos", workers=1)], tmp_path / "photos")
    assert photos.step == 2 and len(photos.losses) == 2
    procedural = train([settings(steps=1)], tmp_path / "procedural")
    info = json.loads(photos.weights.with_suffix(".json").read_text())["info"]
    assert info["texture_files"] == texture_record() and len(info["texture_files"]) >= 20
    assert "texture_files" not in json.loads(procedural.weights.with_suffix(".json").read_text())["info"]

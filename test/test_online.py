"""Online adaptation without ROS (training/online.py): steps lower the self-supervised loss on the frames
they saw, the inference backend gets exactly the adapted weights, saved weights load back and give the
same disparity; inference never waits for a step and always runs one whole network, old or new.

Shipped tiny weights at 128x96 on synthetic pairs, torch on CPU, one thread: a step takes about 0.25 s."""
from __future__ import annotations

import copy
import json
import math
import threading
import time

import numpy as np
import pytest
import torch

from ros2_stereo_depth.artifacts.weights import load_model
from ros2_stereo_depth.data.synthetic import SceneParams, SyntheticSequence
from ros2_stereo_depth.inference.torch_backend import TorchBackend
from ros2_stereo_depth.training.online import MAX_FAILED_CHECKS, AdaptSettings, OnlineAdapter

pytestmark = pytest.mark.usefixtures("one_torch_thread")
HEIGHT, WIDTH = 96, 128


def pairs(count: int, seed: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    sequence = SyntheticSequence(SceneParams(height=HEIGHT, width=WIDTH, max_disparity_px=24.0), seed=seed)
    return [(f.left, f.right) for f in (sequence.frame(i) for i in range(count))]


def backend() -> TorchBackend:
    return TorchBackend(load_model("tiny", height=HEIGHT, width=WIDTH), HEIGHT, WIDTH, device="cpu")


def disparity(net: torch.nn.Module, pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """What the backend would return with `net` swapped in."""
    probe = backend()
    probe.replace_net(net)
    return probe.infer(*pair).disparity_px


def test_steps_lower_the_loss_and_the_backend_runs_the_adapted_weights(tmp_path) -> None:
    frames = pairs(3)
    torch_backend = backend()
    original = torch_backend.net
    original_state = {k: v.clone() for k, v in original.state_dict().items()}
    before_disparity = torch_backend.infer(*frames[0]).disparity_px
    adapter = OnlineAdapter(original, HEIGHT, WIDTH, AdaptSettings(lr=1e-4), torch_backend.replace_net,
                            info={"adapted_from": "tiny"})
    loss_before = adapter.label_free_loss(frames)
    for i in range(8):
        assert adapter.step([frames[i % 3], frames[(i + 1) % 3]]) is not None
    loss_after = adapter.label_free_loss(frames)
    assert loss_after < 0.95 * loss_before, (loss_before, loss_after)  # measured 0.0722 -> 0.062 in 10 steps

    # The inference network object was never touched; the backend now runs a copy equal to the adapter's.
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in original_state.items())
    swapped = torch_backend.net
    assert swapped is not original and swapped is not adapter.net and not swapped.training
    adapted_state = adapter.net.state_dict()
    assert all(torch.equal(v, adapted_state[k]) for k, v in swapped.state_dict().items())
    changed = max(float((v.float() - original_state[k].float()).abs().max()) for k, v in adapted_state.items())
    assert changed > 1e-5
    after_disparity = torch_backend.infer(*frames[0]).disparity_px
    assert np.abs(after_disparity - before_disparity).max() > 1e-3
    stats = adapter.stats()
    assert (stats.steps, stats.swaps) == (8, 8) and stats.last_loss is not None and stats.mean_loss is not None

    # Saved weights (safetensors + sidecar) load back through the one loader and give the same disparity.
    path = adapter.save(tmp_path / "adapted.safetensors")
    reloaded = load_model(weights=path, height=HEIGHT, width=WIDTH)
    assert reloaded.config.name == "tiny"
    np.testing.assert_allclose(disparity(reloaded.net, frames[0]), after_disparity, rtol=0, atol=1e-5)
    info = json.loads(path.with_suffix(".json").read_text())["info"]
    assert info["adapted_from"] == "tiny" and info["online_adaptation"]["steps"] == 8
    assert adapter.stats().saved_at_step == 8


def test_a_step_needs_a_new_frame_and_uses_the_newest() -> None:
    adapter = OnlineAdapter(backend().net, HEIGHT, WIDTH, AdaptSettings(frames_per_step=2), lambda net: None)
    assert adapter.step() is None  # nothing offered
    frames = pairs(3)
    for pair in frames:
        adapter.offer(*pair)
    batch = adapter._batch()
    assert batch is not None and len(batch) == 2
    assert batch[0][0] is frames[-1][0] and batch[0][1] is frames[-1][1]  # references, not copies
    assert any(batch[1][0] is left and batch[1][1] is right for left, right in frames[:-1])
    assert adapter.step() is None  # nothing new since
    adapter.offer(*frames[0])
    assert adapter.step() is not None and adapter.stats().steps == 1


def test_inference_never_waits_for_a_step() -> None:
    """The adaptation thread is held inside a training forward pass: inference still returns, with the
    original weights; once released the step completes and inference switches to the adapted weights."""
    torch_backend = backend()
    original = torch_backend.net
    adapter = OnlineAdapter(original, HEIGHT, WIDTH, AdaptSettings(lr=1e-3, max_steps_per_s=100.0),
                            torch_backend.replace_net)
    entered, release = threading.Event(), threading.Event()

    def hold(*_):
        entered.set()
        release.wait(timeout=60.0)

    adapter.net.register_forward_pre_hook(hold)
    frame = pairs(1)[0]
    expected_old = torch_backend.infer(*frame).disparity_px
    adapter.start()
    try:
        adapter.offer(*frame)
        assert entered.wait(timeout=30.0), "the adaptation step did not start"
        results: list[np.ndarray] = []
        caller = threading.Thread(target=lambda: results.extend(torch_backend.infer(*frame).disparity_px
                                                                 for _ in range(3)))
        caller.start()
        caller.join(timeout=30.0)
        assert not caller.is_alive() and len(results) == 3, "inference waited for the adaptation step"
        assert all(np.array_equal(r, expected_old) for r in results)
        assert adapter.stats().steps == 0 and torch_backend.net is original
        release.set()
        deadline = time.monotonic() + 30.0
        while adapter.stats().swaps < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        release.set()
        adapter.stop()
    assert torch_backend.net is not original
    assert np.array_equal(torch_backend.infer(*frame).disparity_px, disparity(adapter.net, frame))


def test_every_inference_runs_one_whole_network_while_adapting() -> None:
    """Inference called in a loop while the thread adapts and swaps: each result is exactly the output of
    the original or of one of the published networks, never of a mixture of two."""
    torch_backend = backend()
    published = [torch_backend.net]
    lock = threading.Lock()

    def publish(net: torch.nn.Module) -> None:
        with lock:
            published.append(net)
        torch_backend.replace_net(net)

    frames = pairs(3)
    probe = frames[0]
    adapter = OnlineAdapter(torch_backend.net, HEIGHT, WIDTH, AdaptSettings(lr=1e-3, max_steps_per_s=100.0), publish)
    adapter.start()
    results: list[np.ndarray] = []
    latencies_s: list[float] = []
    try:
        deadline = time.monotonic() + 60.0
        i = 0
        while adapter.stats().swaps < 4 and time.monotonic() < deadline:
            adapter.offer(*frames[i % 3])
            i += 1
            started = time.perf_counter()
            results.append(torch_backend.infer(*probe).disparity_px)
            latencies_s.append(time.perf_counter() - started)
    finally:
        adapter.stop()
    assert adapter.stats().swaps >= 4
    candidates = [disparity(net, probe) for net in published]
    for a, b in zip(candidates, candidates[1:]):
        assert np.abs(a - b).max() > 1e-4, "successive networks must differ for this test to mean anything"
    matched = [next((j for j, c in enumerate(candidates) if np.array_equal(r, c)), None) for r in results]
    assert None not in matched, f"an inference result matches no whole network: {matched}"
    assert matched == sorted(matched), "inference went back to older weights"
    assert len(set(matched)) >= 2, "no swap happened between inference calls"


def test_steps_respect_the_rate_bound() -> None:
    adapter = OnlineAdapter(backend().net, HEIGHT, WIDTH, AdaptSettings(max_steps_per_s=2.0), lambda net: None)
    frame = pairs(1)[0]
    adapter.start()
    started = time.monotonic()
    try:
        while time.monotonic() - started < 2.5:
            adapter.offer(*frame)
            time.sleep(0.05)
    finally:
        adapter.stop()
    elapsed = time.monotonic() - started
    assert 1 <= adapter.stats().steps <= 2.0 * elapsed + 1
    assert adapter.stats().state == "stopped"


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_the_guard_keeps_weights_that_pass_and_rolls_back_a_wrecked_network() -> None:
    """lr 1e-4: the check passes and the adapted weights stay. lr 0.05 (measured: disparities off by up to
    60 px, photometric error 0.25 against 0.04): the check fails, the weights that last passed are put back
    and published, and inference gives their disparity again. lr 5: the first step breaks the network (NaN
    disparity), the second step's loss is NaN, and that rolls back too."""
    frames = pairs(4)
    torch_backend = backend()
    start = torch_backend.net
    start_disparity = torch_backend.infer(*frames[0]).disparity_px
    gentle = OnlineAdapter(start, HEIGHT, WIDTH, AdaptSettings(lr=1e-4, check_every=0), torch_backend.replace_net)
    for pair in frames:
        gentle.offer(*pair)
    for i in range(4):
        gentle.step([frames[i], frames[(i + 1) % 4]])
    adapted = copy.deepcopy(gentle.net)
    assert gentle.check() and not same_weights(gentle.net, start)
    assert same_weights(gentle.net, adapted) and torch_backend.net is not start
    stats = gentle.stats()
    assert (stats.checks, stats.rollbacks, stats.swaps) == (1, 0, 4)
    assert "photometric" in stats.last_check and "disparity spread" in stats.last_check

    wrecked = OnlineAdapter(start, HEIGHT, WIDTH, AdaptSettings(lr=0.05, check_every=2), torch_backend.replace_net)
    for pair in frames:
        wrecked.offer(*pair)
    wrecked.step(frames[:2])
    assert np.abs(torch_backend.infer(*frames[0]).disparity_px - start_disparity).max() > 1.0  # really wrecked
    wrecked.step(frames[2:])  # step 2: the check is due, fails and rolls back to the starting weights
    stats = wrecked.stats()
    assert (stats.steps, stats.checks, stats.rollbacks, stats.swaps) == (2, 1, 1, 3)
    assert same_weights(wrecked.net, start) and same_weights(torch_backend.net, start)
    np.testing.assert_allclose(torch_backend.infer(*frames[0]).disparity_px, start_disparity, rtol=0, atol=1e-5)

    broken = OnlineAdapter(start, HEIGHT, WIDTH, AdaptSettings(lr=5.0, check_every=0), torch_backend.replace_net)
    broken.step(frames[:2])
    assert np.isnan(torch_backend.infer(*frames[0]).disparity_px).all()
    assert math.isnan(broken.step(frames[2:]))
    stats = broken.stats()
    assert (stats.steps, stats.checks, stats.rollbacks) == (1, 0, 1) and "adaptation loss nan" in stats.last_check
    np.testing.assert_allclose(torch_backend.infer(*frames[0]).disparity_px, start_disparity, rtol=0, atol=1e-5)


def test_saved_weights_pass_a_check_first(tmp_path) -> None:
    """A save between checks checks first: the wrecked weights are never written, the ones that passed are."""
    frames = pairs(2)
    start = backend().net
    adapter = OnlineAdapter(start, HEIGHT, WIDTH, AdaptSettings(lr=0.05, check_every=50), lambda net: None)
    for pair in frames:
        adapter.offer(*pair)
    adapter.step(frames)
    path = adapter.save(tmp_path / "adapted.safetensors")
    assert same_weights(load_model(weights=path, height=HEIGHT, width=WIDTH).net, start)
    record = json.loads(path.with_suffix(".json").read_text())["info"]["online_adaptation"]
    assert (record["steps"], record["checks"], record["rollbacks"], record["check_every"]) == (1, 1, 1, 50)


def test_adaptation_stops_after_failed_checks_in_a_row() -> None:
    reports: list[str] = []
    torch_backend = backend()
    start = torch_backend.net
    adapter = OnlineAdapter(start, HEIGHT, WIDTH, AdaptSettings(lr=0.05, check_every=1, max_steps_per_s=100.0),
                            torch_backend.replace_net, report=reports.append)
    frames = pairs(3)
    adapter.start()
    try:
        deadline, i = time.monotonic() + 60.0, 0
        while not adapter.stats().state.startswith("stopped") and time.monotonic() < deadline:
            adapter.offer(*frames[i % 3])
            i += 1
            time.sleep(0.02)
    finally:
        adapter.stop()
    stats = adapter.stats()
    assert stats.state.startswith(f"stopped: {MAX_FAILED_CHECKS} failed checks in a row"), stats.state
    assert (stats.steps, stats.checks, stats.rollbacks) == (MAX_FAILED_CHECKS,) * 3
    assert len(reports) == 1 and "failed checks in a row" in reports[0]
    assert same_weights(torch_backend.net, start)  # what inference runs after it gave up


@pytest.mark.parametrize("changes, needle", [({"lr": 0.0}, "positive"), ({"max_steps_per_s": 0.0}, "positive"),
                                             ({"save_path": "adapted.pt"}, ".safetensors"),
                                             ({"check_every": -1}, "check_every")])
def test_settings_are_checked(changes, needle) -> None:
    with pytest.raises(ValueError, match=needle):
        AdaptSettings(**changes)

"""health.Health: the /diagnostics status from its counters, with an injected clock (no DDS needed; the
node's published status is checked over DDS in test_node.py and test_bad_input.py)."""
from diagnostic_msgs.msg import DiagnosticStatus

from ros2_stereo_depth.ros.health import Health

TOPICS = ["left/image_rect", "right/image_rect", "left/camera_info", "right/camera_info"]


def values(status):
    return {kv.key: kv.value for kv in status.values}


def test_status_levels_rates_and_counters():
    now = [0.0]
    health = Health(TOPICS, clock=lambda: now[0])
    backend = {"backend": "onnxruntime", "device": "cpu", "precision": "fp32"}
    now[0] = 1.0
    status = health.status("n: stereo depth", "cpu", backend, sync_dropped=0)
    assert (status.level, status.message) == (DiagnosticStatus.WARN, "no input arrives")
    for _ in range(4):  # 4 left messages of each left topic in 2 s
        health.message("left/image_rect")
        health.message("left/camera_info")
    now[0] = 3.0
    status = health.status("n: stereo depth", "cpu", backend, sync_dropped=3)
    v = values(status)
    assert status.level == DiagnosticStatus.WARN
    assert status.message == "no messages on right/image_rect, right/camera_info"
    assert v["rate left/image_rect (Hz)"] == "2.00" and v["rate right/image_rect (Hz)"] == "0.00"
    assert v["dropped_unpaired"] == "3" and v["backend"] == "onnxruntime" and v["precision"] == "fp32"
    for topic in TOPICS:
        health.message(topic)
    health.count("sets", 2)
    health.processed(latency_s=0.050, work_s=0.040)
    health.processed(latency_s=0.150, work_s=0.060)
    health.refuse("right/camera_info", "baseline")
    health.warn("left/image_rect", "empty_frame_id")
    now[0] = 4.0
    status = health.status("n: stereo depth", "cpu", backend, sync_dropped=3)
    v = values(status)
    assert status.level == DiagnosticStatus.OK and "1 sets refused" in status.message
    assert (v["sets"], v["processed"], v["refused"], v["refused right/camera_info: baseline"]) == ("2", "2", "1", "1")
    assert v["warning left/image_rect: empty_frame_id"] == "1" and v["messages left/image_rect"] == "5"
    assert v["latency p50 (ms)"] == "100.0" and v["latency p95 (ms)"] == "145.0" and v["work p50 (ms)"] == "50.0"
    now[0] = 5.0
    inactive = health.status("n: stereo depth", "", {}, sync_dropped=0, active=False)
    assert (inactive.level, inactive.message) == (DiagnosticStatus.OK, "inactive")

"""The installed entry point with the SHIPPED params file, over real DDS with separate processes:
every 640x480 and 1280x720 set published at 15 Hz reaches the synchroniser (best-effort and reliable
publishers), one frame goes through, Ctrl-C exits cleanly; start-up errors are one line; the launch file
and params file agree with the node."""
from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile

from ros2_stereo_depth.image_encoding import image_to_array
from ros2_stereo_depth.ros.environment import (FASTDDS_PROFILE, PROFILE_VARIABLE, apply_dds_defaults,
                                               apply_local_defaults, limit_malloc_arenas)
from ros2_stereo_depth.ros.params import ParameterError

from ros_harness import Harness, stereo_pair

pytestmark = pytest.mark.dds

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config" / "stereo_depth.yaml"
CPU_PRESET = ROOT / "config" / "stereo_depth_cpu.yaml"
NS = "/test_startup"
# Only what the test needs differs from the shipped file: the small network and one thread.
OVERRIDES = ["-p", "config:=tiny", "-p", "threads:=1"]


def node_command(*extra: str, params_file: Path | str = SHIPPED, namespace: str = NS) -> list[str]:
    return [sys.executable, "-m", "ros2_stereo_depth.ros.node", "--ros-args", "--params-file", str(params_file),
            *OVERRIDES, "-r", f"__ns:={namespace}", *extra]


def node_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop(PROFILE_VARIABLE, None)  # the executable must find the profile by itself, as under `ros2 run`
    return env


@pytest.fixture(scope="module")
def running():
    proc = subprocess.Popen(node_command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=node_env())
    client = Harness(NS, {}, start_node=False, outputs=())
    client.sets = []
    client.client.create_subscription(DiagnosticArray, "/diagnostics", lambda m: client.sets.extend(
        int({kv.key: kv.value for kv in s.values}["sets"]) for s in m.status if s.name.startswith(NS)),
        QoSProfile(depth=20))
    try:
        deadline = time.monotonic() + 120
        while not client.sets:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "no diagnostics from the node"
            time.sleep(0.1)
        yield proc, client
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def sets_so_far(client: Harness) -> int:
    count = len(client.sets)
    deadline = time.monotonic() + 5
    while len(client.sets) < count + 2 and time.monotonic() < deadline:  # a status from after the call
        time.sleep(0.05)
    return client.sets[-1]


@pytest.mark.parametrize("width,height", [(640, 480), (1280, 720)])
@pytest.mark.parametrize("reliability", ["best_effort", "reliable"])
def test_shipped_params_deliver_every_set(running, reliability, width, height):
    """The shipped qos_reliability (best_effort) with the shipped DDS profile: >= 99 % of the sets of a
    15 Hz publisher in another process reach the synchroniser (measured: all of them)."""
    _, client = running
    before = sets_so_far(client)
    count = 30
    publisher = subprocess.run([sys.executable, str(ROOT / "test" / "dds_publisher.py"), NS, reliability, str(width),
                                str(height), "15", str(count)], capture_output=True, text=True, timeout=120,
                               env=dict(os.environ))
    assert publisher.returncode == 0, publisher.stdout + publisher.stderr
    delivered = sets_so_far(client) - before
    assert delivered >= 0.99 * count, f"{delivered} of {count} sets arrived ({reliability}, {width}x{height})"


def test_node_processes_get_one_malloc_arena(running):
    """Set before start-up for the processes the demo, the bench and these tests start; the executables
    apply it themselves (mallopt) when nobody did; a value the user set wins."""
    env: dict[str, str] = {}
    apply_local_defaults(env)
    assert env["MALLOC_ARENA_MAX"] == "1"
    proc, _ = running
    environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
    assert b"MALLOC_ARENA_MAX=1" in environ  # the node started by the `running` fixture
    assert limit_malloc_arenas({"MALLOC_ARENA_MAX": "4"}) is False
    code = "import sys; from ros2_stereo_depth.ros.environment import limit_malloc_arenas; sys.exit(0 if limit_malloc_arenas() else 1)"
    unset = {k: v for k, v in node_env().items() if k != "MALLOC_ARENA_MAX"}
    assert subprocess.run([sys.executable, "-c", code], env=unset).returncode == 0  # glibc: applied


def test_one_frame_through_and_clean_exit(running):
    proc, client = running
    client.output_subs["disparity"] = client.subscribe("disparity")
    deadline = time.monotonic() + 20
    while client.output_subs["disparity"].get_publisher_count() == 0 or not all(
            p.get_subscription_count() for p in client.pubs):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # the node's publisher sees our subscription too (lazy processing)
    sample = stereo_pair(256, 192)
    out = client.wait_for(client.publish(client.messages(sample.left, sample.right, client.next_header())),
                          names=("disparity",), timeout=60.0)
    assert (out["disparity"].image.width, out["disparity"].image.height) == (256, 192)
    assert np.isfinite(image_to_array(out["disparity"].image)).all()
    proc.send_signal(signal.SIGINT)
    log, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, log
    assert "backend onnxruntime on cpu, input 256x192" in log, log
    assert "synchronised sets" in log and "1 processed" in log, log
    assert "Traceback" not in log and "Failed to publish log message" not in log, log


def _one_line_error(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=node_env())
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("extra,expected", [
    (["-p", "queue_size:=0"], "parameter queue_size = 0 is not allowed: use an integer in [1, 100]"),
    (["-p", "qos_reliability:=sometimes"], "parameter qos_reliability = 'sometimes' is not allowed: use one of "
                                           "best_effort, reliable"),
], ids=["queue_size", "reliability"])
def test_parameter_errors_are_one_line(extra, expected):
    assert expected in _one_line_error(node_command(*extra, namespace="/bad_param"))


def test_parameter_checks():
    from ros2_stereo_depth.ros.node import PARAMETERS
    from ros2_stereo_depth.ros.params import check_value

    assert check_value("min_disparity", PARAMETERS["min_disparity"], 0) == 0.0  # an integer where a float is meant
    assert type(check_value("min_disparity", PARAMETERS["min_disparity"], 0)) is float
    for name, value in (("min_disparity", float("nan")), ("min_disparity", True), ("queue_size", 5.0),
                        ("min_confidence", 1.5), ("use_color", 1), ("backend", "cuda")):
        with pytest.raises(ParameterError, match=f"parameter {name} = "):
            check_value(name, PARAMETERS[name], value)


def test_missing_params_file_is_one_line(tmp_path):
    line = _one_line_error(node_command(params_file=tmp_path / "missing.yaml"))
    assert line == f"stereo_depth_node: error: --params-file {tmp_path / 'missing.yaml'}: no such file"


def test_corrupt_weights_is_one_line(tmp_path):
    weights = tmp_path / "corrupt.safetensors"
    weights.write_bytes(b"\x00" * 64)
    line = _one_line_error(node_command("-p", f"weights:={weights}", "-p", "backend:=torch"))
    assert line.startswith("stereo_depth_node: error: cannot load backend torch for config tiny with weights "
                           f"{weights}: "), line


def test_source_refuses_an_invalid_reliability():
    import rclpy

    from ros2_stereo_depth.ros.stereo_source import StereoSource

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(ParameterError, match="qos_reliability = 'sometimes'"):
            StereoSource(context=context, parameter_overrides=[Parameter("qos_reliability", value="sometimes")])
    finally:
        rclpy.try_shutdown(context=context)


def test_dds_profile_is_the_default_and_holds_a_720p_set():
    env: dict[str, str] = {}
    apply_dds_defaults(env)
    assert env == {PROFILE_VARIABLE: str(FASTDDS_PROFILE)}
    env = {PROFILE_VARIABLE: "/mine.xml"}
    apply_dds_defaults(env)
    assert env[PROFILE_VARIABLE] == "/mine.xml"  # the user's choice wins
    apply_dds_defaults(other := {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"})
    assert PROFILE_VARIABLE not in other
    ns = {"d": "http://www.eprosima.com"}
    segment = ET.parse(FASTDDS_PROFILE).getroot().find(".//d:transport_descriptor[d:type='SHM']/d:segment_size", ns)
    assert int(segment.text) >= 4 * 1280 * 720 * 3  # a few 720p rgb8 images in flight


def test_params_file_matches_the_node_table():
    from ros2_stereo_depth.ros.node import PARAMETERS

    params = yaml.safe_load(SHIPPED.read_text())["/**"]["ros__parameters"]
    assert set(params) == set(PARAMETERS)
    for name, value in params.items():
        assert type(value) is type(PARAMETERS[name].default), f"{name}: {value!r} has the wrong type"
        assert value == PARAMETERS[name].default, f"{name}: params file and node defaults differ"


def test_cpu_preset_sets_only_node_parameters_that_differ(tmp_path):
    from ros2_stereo_depth.ros.node import PARAMETERS, parameter_values
    from ros2_stereo_depth.ros.params import read_params_file

    preset = read_params_file(CPU_PRESET, PARAMETERS)
    assert preset == {"config": "tiny", "match_radius_px": 0, "match_camera_radius_px": 0, "match_edges": False}
    assert all(value != PARAMETERS[name].default for name, value in preset.items())
    values = parameter_values(str(CPU_PRESET))
    assert values["match_sgbm"] is True and values["config"] == "tiny" and set(values) == set(PARAMETERS)
    (bad := tmp_path / "bad.yaml").write_text("/**:\n  ros__parameters:\n    match_radius_px: 99\n    colour: 1\n")
    with pytest.raises(ParameterError, match="bad.yaml: unknown parameter.s. colour"):
        read_params_file(bad, PARAMETERS)
    bad.write_text("/**:\n  ros__parameters:\n    match_radius_px: 99\n")
    with pytest.raises(ParameterError, match=r"bad.yaml: parameter match_radius_px = 99 is not allowed: use an integer in \[0, 32\]"):
        read_params_file(bad, PARAMETERS)
    bad.write_text("just: [text")
    with pytest.raises(ParameterError, match="bad.yaml: not a readable ROS 2 parameters file"):
        read_params_file(bad, PARAMETERS)


def test_launch_file():
    """launch_ros is not installable here: check the launch file's structure statically."""
    source = (ROOT / "launch" / "stereo_depth.launch.py").read_text()
    tree = ast.parse(source)
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]
    declared = {ast.literal_eval(c.args[0]) for c in calls if c.func.id == "DeclareLaunchArgument"
                and isinstance(c.args[0], ast.Constant)}
    assert {"namespace", "left_namespace", "right_namespace", "params_file", "backend", "engine_path", "lifecycle",
            "rviz"} <= declared
    executables = {ast.literal_eval(k.value) for c in calls for k in c.keywords
                   if k.arg == "executable" and isinstance(k.value, ast.Constant)}
    assert executables == {"stereo_depth_node", "stereo_depth_lifecycle_node", "rviz2"}
    scripts = (ROOT / "setup.py").read_text()
    assert "stereo_depth_node = ros2_stereo_depth.ros.node:main" in scripts
    assert "stereo_depth_lifecycle_node = ros2_stereo_depth.ros.lifecycle_node:main" in scripts
    assert '"rviz", "stereo_depth.rviz"' in source and (ROOT / "rviz" / "stereo_depth.rviz").is_file()
    assert "FASTDDS_DEFAULT_PROFILES_FILE" in source
    assert 'additional_env={"MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "1")}' in source
    view = yaml.safe_load((ROOT / "rviz" / "stereo_depth.rviz").read_text())
    displays = {d["Class"]: d for d in view["Visualization Manager"]["Displays"]}
    assert displays["rviz_default_plugins/PointCloud2"]["Topic"]["Value"] == "points2"
    topics = {d["Topic"]["Value"] for d in view["Visualization Manager"]["Displays"] if "Topic" in d}
    assert topics == {"points2", "disparity/image_color", "left/image_rect"}


@pytest.mark.parametrize("params_file", [SHIPPED, CPU_PRESET], ids=["shipped", "cpu_preset"])
def test_lifecycle_executable_starts_unconfigured_and_exits_on_sigterm(params_file):
    """The managed executable with the shipped params: up and unconfigured (no backend loaded), and a
    SIGTERM (docker stop, launch's escalation) exits cleanly even with nothing scheduled to wake it."""
    from lifecycle_msgs.msg import State
    from lifecycle_msgs.srv import GetState

    from rcl_interfaces.srv import GetParameters

    command = [sys.executable, "-m", "ros2_stereo_depth.ros.lifecycle_node", "--ros-args", "--params-file",
               str(params_file), "-r", "__ns:=/test_lifecycle_exe"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=node_env())
    client = Harness("/test_lifecycle_exe", {}, start_node=False, outputs=())
    try:
        get = client.client.create_client(GetState, "/test_lifecycle_exe/stereo_depth_node/get_state")
        assert get.wait_for_service(timeout_sec=90), "no lifecycle services"
        future = get.call_async(GetState.Request())
        deadline = time.monotonic() + 20
        while not future.done():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert future.result().current_state.id == State.PRIMARY_STATE_UNCONFIGURED
        # The node took the file's values (the preset's differ from the defaults).
        params = client.client.create_client(GetParameters, "/test_lifecycle_exe/stereo_depth_node/get_parameters")
        assert params.wait_for_service(timeout_sec=30)
        future = params.call_async(GetParameters.Request(names=["config", "match_radius_px", "match_camera_radius_px"]))
        while not future.done():
            assert time.monotonic() < deadline + 20
            time.sleep(0.05)
        values = [v.string_value or v.integer_value for v in future.result().values]
        expected = yaml.safe_load(params_file.read_text())["/**"]["ros__parameters"]
        assert values == [expected["config"], expected["match_radius_px"], expected["match_camera_radius_px"]]
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            log, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            log, _ = proc.communicate()
            pytest.fail(f"SIGTERM did not stop the node: {log}")
    assert proc.returncode == 0 and "Traceback" not in log, log

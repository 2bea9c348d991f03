"""The package builds with `colcon build` as in a ROS 2 workspace and installs what `ros2 launch` needs."""
import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.colcon

REPO = Path(__file__).resolve().parents[1]
COLCON = Path(sys.executable).with_name("colcon")


@pytest.fixture(scope="module")
def install_dir(tmp_path_factory) -> Path:
    if not COLCON.exists():
        pytest.skip("colcon is not installed in this environment (make venv installs it)")
    ws = tmp_path_factory.mktemp("ws")
    src = ws / "src" / "ros2_stereo_depth"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLCON")}
    result = subprocess.run([str(COLCON), "build", "--packages-select", "ros2_stereo_depth"], cwd=ws, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return ws / "install" / "ros2_stereo_depth"


def test_executables_are_where_ros2_run_looks(install_dir):
    for name in ("stereo_depth_node", "stereo_depth_lifecycle_node", "stereo_source", "stereo-depth"):
        exe = install_dir / "lib" / "ros2_stereo_depth" / name
        assert exe.is_file() and os.access(exe, os.X_OK), exe


def test_launch_config_and_index_are_installed(install_dir):
    share = install_dir / "share" / "ros2_stereo_depth"
    assert (share / "package.xml").is_file()
    assert (share / "config" / "stereo_depth.yaml").read_text() == (REPO / "config" / "stereo_depth.yaml").read_text()
    launch = share / "launch" / "stereo_depth.launch.py"
    tree = ast.parse(launch.read_text())
    names = {node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
             for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert {"Node", "DeclareLaunchArgument", "LaunchDescription"} <= names
    assert (install_dir / "share" / "ament_index" / "resource_index" / "packages" / "ros2_stereo_depth").is_file()
    assert (share / "rviz" / "stereo_depth.rviz").read_text() == (REPO / "rviz" / "stereo_depth.rviz").read_text()
    profile = (REPO / "ros2_stereo_depth" / "ros" / "fastdds_profile.xml").read_text()
    assert (share / "config" / "fastdds_profile.xml").read_text() == profile  # for the launch file / camera


def test_shipped_weights_are_installed_with_the_module(install_dir):
    site = next((install_dir / "lib").glob("python3*/site-packages/ros2_stereo_depth"))
    shipped = sorted(p.name for p in (REPO / "ros2_stereo_depth" / "weights").glob("*.safetensors"))
    installed = sorted(p.name for p in (site / "weights").glob("*.safetensors"))
    assert shipped == ["fast.safetensors", "tiny.safetensors"]  # the node, infer, export and demo default to them
    assert installed == shipped
    assert sorted(p.name for p in (site / "weights").glob("*.json")) == ["fast.json", "tiny.json"]
    assert (site / "artifacts" / "tensorrt_onnx_ops.txt").is_file()
    assert (site / "ros" / "fastdds_profile.xml").is_file()  # what the executables load by default


def test_compiled_matching_loops_are_built_and_run(install_dir):
    """colcon build compiles the local matching's C loops (setup.py) next to the installed module, and the
    installed package matches with them: a 4 px shift found from a 2 px prior."""
    site = next((install_dir / "lib").glob("python3*/site-packages"))
    assert len(list((site / "ros2_stereo_depth" / "inference").glob("_matching_kernels*.so"))) == 1
    script = """
import numpy as np
from ros2_stereo_depth.inference import census_matching
rng = np.random.default_rng(0)
texture = rng.integers(0, 256, (40, 84, 3), np.uint8)
left, right = texture[:, :80].copy(), texture[:, 4:].copy()
disparity, cost = census_matching.match_around(census_matching.census_codes(left, right), np.full((40, 80), 2.0, np.float32), 3)
print(census_matching.__file__, float(np.median(disparity[:, 20:])))
"""
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=install_dir, capture_output=True, text=True,
                            timeout=60)  # not the repository: "-c" imports from the working directory first
    assert result.returncode == 0, result.stderr[-2000:]
    module, median = result.stdout.split()
    assert module.startswith(str(site)) and abs(float(median) - 4.0) < 0.25

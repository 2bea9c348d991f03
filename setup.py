"""ament_python package: builds with `colcon build` in a ROS 2 workspace and installs with pip."""
from glob import glob

from setuptools import Extension, find_packages, setup

PACKAGE = "ros2_stereo_depth"

# The local matching's inner loops (inference/matching_kernels.c): a plain C library, loaded with ctypes by
# inference/matching_kernels.py (it uses no Python API). -ffp-contract=off keeps its floats bit-identical to
# the NumPy code it replaced; -O3 vectorises its loops.
MATCHING_KERNELS = Extension(f"{PACKAGE}.inference._matching_kernels",
                             sources=[f"{PACKAGE}/inference/matching_kernels.c"],
                             extra_compile_args=["-O3", "-ffp-contract=off", "-std=c99"])

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    ext_modules=[MATCHING_KERNELS],
    package_data={PACKAGE: ["weights/*.safetensors", "weights/*.json", "tools/*.yaml", "artifacts/*.txt", "ros/*.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config", ["ros2_stereo_depth/ros/fastdds_profile.xml"]),  # for the camera's environment
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
        (f"share/{PACKAGE}/engines", ["engines/README.md"]),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="ros2_stereo_depth maintainers",
    maintainer_email="maintainers@ros2-stereo-depth.invalid",
    description="Learned stereo depth for ROS 2 (TensorRT / ONNX Runtime / PyTorch)",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "stereo-depth = ros2_stereo_depth.cli:main",
            "stereo_depth_node = ros2_stereo_depth.ros.node:main",
            "stereo_depth_lifecycle_node = ros2_stereo_depth.ros.lifecycle_node:main",
            "stereo_source = ros2_stereo_depth.ros.stereo_source:main",
        ],
    },
)

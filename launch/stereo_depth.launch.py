"""Launch stereo_depth_node with a parameter file, optionally in a namespace.

  ros2 launch ros2_stereo_depth stereo_depth.launch.py namespace:=stereo params_file:=/path/to.yaml

The node subscribes to relative names (left/image_rect, right/image_rect, left/camera_info,
right/camera_info) and publishes disparity, points2 and depth, so a namespace or the remapping
arguments below connect it to a camera: e.g. left_image:=/camera/left/image_rect_color.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# (launch argument, node topic) pairs; each argument defaults to the node's own name (no remapping).
TOPICS = (
    ("left_image", "left/image_rect"),
    ("right_image", "right/image_rect"),
    ("left_camera_info", "left/camera_info"),
    ("right_camera_info", "right/camera_info"),
    ("disparity", "disparity"),
    ("points2", "points2"),
    ("depth", "depth"),
)


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("ros2_stereo_depth"), "config", "stereo_depth.yaml")
    arguments = [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="parameter file (see config/stereo_depth.yaml)"),
    ]
    arguments += [DeclareLaunchArgument(name, default_value=topic, description=f"topic for {topic}")
                  for name, topic in TOPICS]
    node = Node(
        package="ros2_stereo_depth",
        executable="stereo_depth_node",
        name="stereo_depth_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file")],
        remappings=[(topic, LaunchConfiguration(name)) for name, topic in TOPICS],
        output="screen",
        emulate_tty=True,
    )
    return LaunchDescription(arguments + [node])

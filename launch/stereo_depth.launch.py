"""Launch stereo_depth_node (or its lifecycle variant) with a parameter file, optionally with rviz.

  ros2 launch ros2_stereo_depth stereo_depth.launch.py namespace:=stereo left_namespace:=/cam/left \
      right_namespace:=/cam/right params_file:=/path/to.yaml backend:=onnxruntime rviz:=true

Topics: the node subscribes to left/image_rect, left/camera_info, left/image_rect_color and the right
ones; as in stereo_image_proc's launch file they are remapped to <left_namespace>/image_rect etc., and
left_image:=/some/topic (and the other per-topic arguments) remap one topic directly.
DDS: nodes started here get the package's Fast DDS profile unless FASTDDS_DEFAULT_PROFILES_FILE is set
(README "DDS settings": the camera driver needs it too for every large image to arrive).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

PACKAGE = "ros2_stereo_depth"
# (launch argument, node topic, topic under the side's namespace); "" (the default) derives the topic
# from left_namespace / right_namespace, as stereo_image_proc's launch file does.
INPUT_TOPICS = (
    ("left_image", "left/image_rect", ("left_namespace", "image_rect")),
    ("right_image", "right/image_rect", ("right_namespace", "image_rect")),
    ("left_camera_info", "left/camera_info", ("left_namespace", "camera_info")),
    ("right_camera_info", "right/camera_info", ("right_namespace", "camera_info")),
    ("left_image_color", "left/image_rect_color", ("left_namespace", "image_rect_color")),
)
OUTPUT_TOPICS = ("disparity", "points2", "depth", "confidence", "disparity/image_color")
# Launch arguments that override the params file when given (empty: the file's value).
PARAMETER_ARGUMENTS = ("backend", "engine_path")


def _nodes(context):
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    share = get_package_share_directory(PACKAGE)
    remappings = []
    for argument, topic, (side, leaf) in INPUT_TOPICS:
        remappings.append((topic, value(argument) or f"{value(side).rstrip('/')}/{leaf}"))
    remappings += [(topic, value(topic.replace("/", "_"))) for topic in OUTPUT_TOPICS]
    overrides = {name: value(name) for name in PARAMETER_ARGUMENTS if value(name)}
    lifecycle = value("lifecycle").lower() in ("true", "1", "yes")
    common = dict(package=PACKAGE, name="stereo_depth_node", namespace=value("namespace"),
                  parameters=[value("params_file")] + ([overrides] if overrides else []),
                  remappings=remappings, output="screen", emulate_tty=True,
                  # one malloc arena: less peak memory, no slower (ros2_stereo_depth/ros/environment.py)
                  additional_env={"MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "1")})
    actions = []
    if not os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        actions.append(SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                                              os.path.join(share, "config", "fastdds_profile.xml")))
    if lifecycle:
        actions.append(LifecycleNode(executable="stereo_depth_lifecycle_node", **common))
    else:
        actions.append(Node(executable="stereo_depth_node", **common))
    actions.append(Node(package="rviz2", executable="rviz2", name="stereo_depth_rviz", namespace=value("namespace"),
                        arguments=["-d", os.path.join(share, "rviz", "stereo_depth.rviz")],
                        remappings=[("left/image_rect", remappings[0][1])],
                        condition=IfCondition(LaunchConfiguration("rviz"))))
    return actions


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    arguments = [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its outputs"),
        DeclareLaunchArgument("left_namespace", default_value="left", description="namespace of the left camera"),
        DeclareLaunchArgument("right_namespace", default_value="right", description="namespace of the right camera"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "stereo_depth.yaml"),
                              description="parameter file (see config/stereo_depth.yaml)"),
        DeclareLaunchArgument("backend", default_value="", description="auto|tensorrt|onnxruntime|torch; "
                              "empty: the params file's"),
        DeclareLaunchArgument("engine_path", default_value="", description="TensorRT engine; empty: the params "
                              "file's"),
        DeclareLaunchArgument("lifecycle", default_value="false", description="start stereo_depth_lifecycle_node "
                              "(managed: configure, then activate it)"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start rviz2 with the package's view"),
    ]
    arguments += [DeclareLaunchArgument(name, default_value="", description=f"topic for {topic}; empty: "
                                        f"<{side}>/{leaf}") for name, topic, (side, leaf) in INPUT_TOPICS]
    arguments += [DeclareLaunchArgument(topic.replace("/", "_"), default_value=topic,
                                        description=f"topic for the {topic} output") for topic in OUTPUT_TOPICS]
    return LaunchDescription(arguments + [OpaqueFunction(function=_nodes)])

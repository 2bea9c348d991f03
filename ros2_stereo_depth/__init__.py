"""ros2_stereo_depth: learned stereo depth for ROS 2."""
__version__ = "0.1.0"

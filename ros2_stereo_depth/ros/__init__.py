"""ROS 2 side: message conversions, exact-time sync, the stereo depth node and the synthetic source.

`conversions` and `sync` need only numpy and the message packages; `node` and `stereo_source` need rclpy.
None of them imports cv_bridge, sensor_msgs_py, message_filters or launch at run time.
"""

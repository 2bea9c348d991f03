"""Evaluation: disparity metrics and the OpenCV StereoSGBM baseline behind `stereo-depth evaluate`."""

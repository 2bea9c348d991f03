"""Stereo network, split by pipeline stage."""
from .stereo_net import ExportWrapper, StereoNet

__all__ = ["StereoNet", "ExportWrapper"]

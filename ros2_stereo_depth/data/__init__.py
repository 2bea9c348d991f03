"""Stereo data: the synthetic generator and readers for real dataset formats."""

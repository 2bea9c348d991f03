"""Training: losses, the batch pipeline and the train loop behind `stereo-depth train`."""

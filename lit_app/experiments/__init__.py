"""Experiments built on the app's modules: the detection grid and the adaptive attack on the detector."""

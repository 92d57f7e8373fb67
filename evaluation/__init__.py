"""Offline evaluation of the edge detectors on recorded datasets."""

"""Received audio: per-stream placement (track), mixing, streaming WAV files, recordings."""

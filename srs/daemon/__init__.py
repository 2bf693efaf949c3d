"""The daemon: builds srs from its configuration, runs it, shuts it down (the composition root)."""

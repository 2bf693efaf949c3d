"""The media plane: where recordings' RTP is received, placed, mixed and written.

``contract`` (the interface and specs) · ``ports`` (bound port pairs and their allocation) ·
``recordings`` (the recorders of one plane or worker) · ``inprocess`` (the plane on the daemon's
loop) · ``worker_plane`` (daemon side) and ``worker_loop`` (child side) of the worker processes.
"""

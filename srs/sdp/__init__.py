"""SDP parsing and the recvonly answer of a recording server."""

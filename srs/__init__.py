"""srs: a SIPREC session recording server (RFC 7866, RFC 7865)."""

__version__ = "0.1.0"

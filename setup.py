"""Builds srs's one native module, the media worker's batch receiver, with the system's C compiler.

Everything else is in pyproject.toml. The extension is optional: without a compiler (or off Linux)
the install still succeeds and srs uses the pure-Python receiver of the same interface.
"""

import sys

from setuptools import Extension, setup

ext_modules = []
if sys.platform.startswith("linux"):
    ext_modules.append(
        Extension(
            "srs.mediaplane._batchrecv",
            ["srs/mediaplane/_batchrecv.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall"],
            optional=True,
        )
    )

setup(ext_modules=ext_modules)

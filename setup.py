"""Builds srs's two native modules with the system's C compiler: the media worker's batch receiver
(and crash journal writer), and a track's receive fast-path state (with that path for a batch).

Everything else is in pyproject.toml. The extensions are optional: without a compiler (or off Linux)
the install still succeeds and srs uses the pure-Python code of the same interface.
"""

import os
import sys
import sysconfig

from setuptools import Extension, setup


def _have_zlib() -> bool:
    """zlib's header where the compiler looks by default: the journal's CRC-32 then comes from zlib
    (faster than the module's own tables, same values)."""
    dirs = ["/usr/include", "/usr/local/include", sysconfig.get_config_var("INCLUDEDIR") or ""]
    return any(os.path.exists(os.path.join(d, "zlib.h")) for d in dirs if d)


ext_modules = []
if sys.platform.startswith("linux"):
    zlib = _have_zlib()
    ext_modules.append(
        Extension(
            "srs.mediaplane._batchrecv",
            ["srs/mediaplane/_batchrecv.c"],
            depends=["srs/batch_views.h"],
            extra_compile_args=["-O2", "-std=c11", "-Wall"],
            define_macros=[("SRS_ZLIB", "1")] if zlib else [],
            libraries=["z"] if zlib else [],
            optional=True,
        )
    )
ext_modules.append(
    Extension(
        "srs.media._trackstate",
        ["srs/media/_trackstate.c"],
        depends=["srs/batch_views.h"],
        extra_compile_args=["-O2", "-std=c11", "-Wall"],
        optional=True,
    )
)

setup(ext_modules=ext_modules)

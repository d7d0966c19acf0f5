"""Build hook for the C extensions: ``sink._rowcodec`` (the sink's events -> COPY rows hot loop) and
``venues.kalshi._deltakey`` (the gatherer's orderbook_delta key parts).

Everything else is in pyproject.toml. The extensions are optional: without a C compiler the install still
succeeds and the sink and the gatherer run their pure-Python paths (``sink.rowcodec.ACCELERATED`` and
``venues.kalshi.keys.ACCELERATED`` say which one runs).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sink._rowcodec",
            ["sink/_rowcodec.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
        Extension(
            "venues.kalshi._deltakey",
            ["venues/kalshi/_deltakey.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
    ]
)

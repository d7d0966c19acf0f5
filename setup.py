"""Build hook for the one C extension, ``sink._rowcodec`` (the sink's events -> COPY rows hot loop).

Everything else is in pyproject.toml. The extension is optional: without a C compiler the install still
succeeds and the sink runs its pure-Python path (``sink.rowcodec.ACCELERATED`` says which one runs).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sink._rowcodec",
            ["sink/_rowcodec.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)

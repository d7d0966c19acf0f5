"""Build hook for the C extensions: every ``_*.c`` beside a package's modules (``sink/_rowcodec.c``, the sink's
events -> COPY rows hot loop) or a venue's (``venues/<name>/_*.c``, e.g. the gatherer's event-key accelerators)
becomes the extension module of the same dotted name.

Everything else is in pyproject.toml. The extensions are optional: without a C compiler the install still
succeeds and the stages run their pure-Python paths (``python -m ops.accelerators`` says which ones run).
"""

from pathlib import Path

from setuptools import Extension, setup

ROOT = Path(__file__).resolve().parent
SOURCES = sorted(p.relative_to(ROOT) for p in [*ROOT.glob("*/_*.c"), *ROOT.glob("venues/*/_*.c")])
# Headers the sources include (mdpipe/murmur2.h): each extension is rebuilt when one changes, and an sdist carries them.
HEADERS = sorted(p.relative_to(ROOT).as_posix() for p in [*ROOT.glob("*/*.h"), *ROOT.glob("venues/*/*.h")])

setup(
    ext_modules=[
        Extension(
            ".".join(source.with_suffix("").parts),
            [source.as_posix()],
            depends=HEADERS,
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
        for source in SOURCES
    ]
)

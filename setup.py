"""The compiled event cores (``runtime/_core.c``: recurrent bundles; ``runtime/_conv_core.c``: conv
bundles; ``docs/runtime.md``): the one thing
pyproject.toml cannot declare. Everything else about the package lives in pyproject.toml.

The extension is ``optional``: where no C compiler or Python headers exist, ``pip install``
still succeeds and the runtime runs on its numpy core (``runtime/compiled.py`` says which core
ran). Flags: ``-O3`` and nothing machine-specific (wheels go to Raspberry Pi 4 cores without the
instructions of newer ones), ``-ffp-contract=off`` so that no compiler fuses the delta encoder's
multiply-add (numpy rounds the product and the sum separately; bit-exactness needs the same);
``-fno-trapping-math`` lets gcc turn the neuron loop's selects into vector blends (it changes no
value, only whether FP exception flags are kept exact, which nothing reads).
``SPIKEEDGE_BUILD_CORE=0`` builds a pure-Python wheel (``deploy/wheelhouse.py`` does, for a
board of another architecture: it runs the numpy core). ``SPIKEEDGE_CFLAGS`` adds flags (the sanitizer test builds its own copy, see
``tests/test_compiled_core.py``).
"""

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildCore(build_ext):
    """Unix compilers get the flags above; others (MSVC) keep their defaults."""

    def build_extensions(self) -> None:
        if self.compiler.compiler_type == "unix":
            extra = ["-O3", "-std=c11", "-ffp-contract=off", "-fno-trapping-math", "-fno-strict-aliasing"] + os.environ.get("SPIKEEDGE_CFLAGS", "").split()
            for ext in self.extensions:
                ext.extra_compile_args = extra
        super().build_extensions()


CORE = [Extension("spikeedge.runtime._core", sources=["runtime/_core.c"], optional=True),
        Extension("spikeedge.runtime._conv_core", sources=["runtime/_conv_core.c"], optional=True)]

setup(
    ext_modules=[] if os.environ.get("SPIKEEDGE_BUILD_CORE") == "0" else CORE,
    cmdclass={"build_ext": BuildCore},
)

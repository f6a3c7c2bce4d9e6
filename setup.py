"""Builds losskit's optional CPU kernel (losskit/_backends/_cpu.c); everything else is in pyproject.toml.

The extension is optional: without a C compiler the install still succeeds and losskit runs its
NumPy kernels (slower, equally exact). ``python -c "import losskit; print(losskit.cpu_kernels())"``
says which is in use.
"""

import sys

from setuptools import Extension, setup

UNIX_ARGS = ["-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math"]
args = UNIX_ARGS if sys.platform != "win32" else ["/O2"]
setup(ext_modules=[Extension("losskit._backends._cpu", ["losskit/_backends/_cpu.c"],
                             extra_compile_args=args, optional=True)])

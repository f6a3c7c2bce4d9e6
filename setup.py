"""Builds losskit's optional CPU kernel (losskit/_backends/_cpu.c); everything else is in pyproject.toml.

The extension is optional: without a C compiler the install still succeeds and losskit runs its
NumPy kernels (slower, equally exact). ``python -c "import losskit; print(losskit.cpu_kernels())"``
says which is in use.
"""

import importlib.util
import os
import sys

from setuptools import Extension, setup

UNIX_ARGS = ["-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math"]
args = UNIX_ARGS if sys.platform != "win32" else ["/O2"]
# With jaxlib installed at build time, _cpu.c also exports its embedding kernels as an XLA FFI target
# (XLA's C header ships with jaxlib), so JAX arrays skip the host callback's copies (jax.py).
ffi = {}
jaxlib = importlib.util.find_spec("jaxlib")
if jaxlib is not None and jaxlib.origin and sys.platform != "win32":
    include = os.path.join(os.path.dirname(jaxlib.origin), "include")
    if os.path.exists(os.path.join(include, "xla", "ffi", "api", "c_api.h")):
        ffi = {"include_dirs": [include], "define_macros": [("LOSSKIT_XLA_FFI", "1")]}
setup(ext_modules=[Extension("losskit._backends._cpu", ["losskit/_backends/_cpu.c"],
                             extra_compile_args=args, optional=True, **ffi)])

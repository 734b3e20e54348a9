"""Build engram's native parts: the C kernel library, the Zig kernel
libraries (one per ISA level) and the Cython driver.

    pip install -e '.[dev]'        # everything
    ENGRAM_BUILD_ZIG=0 pip install -e .   # without Zig (the rollback path)

The libraries are plain shared objects loaded with ctypes, not Python
extensions, so they are built here and placed in engram/kernels/lib/.
Flags are portable: each ISA variant gets its own -m flags and the CPU is
probed at run time; nothing is built with -march=native.
"""
import os
import platform
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
LIB_DIR = Path("engram", "kernels", "lib")
X86 = platform.machine().lower() in ("x86_64", "amd64")

C_FLAGS = ["-O3", "-fPIC", "-std=gnu11", "-Wall", "-Wextra", "-fvisibility=hidden", "-fno-trapping-math",
           "-fno-strict-aliasing", "-Icsrc/include", "-Icsrc/kernels"]
# -fno-trapping-math lets float selects (clamps) vectorise; no kernel relies on FP exceptions.
# (source, extra flags): one translation unit per ISA variant.
C_SOURCES = [("csrc/dispatch.c", []), ("csrc/kernels/isa_scalar.c", []), ("csrc/kernels/spread.c", []),
             ("csrc/kernels/pool.c", []), ("csrc/kernels/hwcounters.c", [])]
if X86:
    C_SOURCES += [
        ("csrc/kernels/isa_avx2.c", ["-mavx2", "-mfma", "-mf16c", "-msse4.2"]),
        ("csrc/kernels/isa_avx512.c", ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq",
                                       "-mavx2", "-mfma", "-mf16c", "-msse4.2"]),
    ]
else:
    C_FLAGS.append("-DEG_NO_X86_VARIANTS")
# Zig: one library per ISA level; -mcpu names a baseline, never "native". LLVM tunes
# x86_64_v4 to prefer 256-bit vectors; -prefer_256_bit lets the AVX-512 build use zmm.
ZIG_LEVELS = {"scalar": "baseline", "avx2": "x86_64_v3", "avx512": "x86_64_v4-prefer_256_bit"} if X86 else {"scalar": "baseline"}


def run(cmd, **kw):
    print("  $", " ".join(shlex.quote(str(c)) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)


class BuildNative(build_ext):
    """build_ext that first builds the ctypes libraries."""

    def run(self):
        out_dirs = [Path(self.build_lib) / LIB_DIR]
        if self.inplace or getattr(self, "editable_mode", False):
            out_dirs.append(ROOT / LIB_DIR)
        tmp = Path(self.build_temp).resolve() / "native"
        tmp.mkdir(parents=True, exist_ok=True)
        built = [self.build_c(tmp)]
        if os.environ.get("ENGRAM_BUILD_ZIG", "1") != "0":
            built += self.build_zig(tmp)
        else:
            print("ENGRAM_BUILD_ZIG=0: skipping the Zig kernels", flush=True)
        for d in out_dirs:
            d.mkdir(parents=True, exist_ok=True)
            for stale in d.glob("libengram_*.so"):
                if stale.name not in {lib.name for lib in built}:
                    stale.unlink()
            for lib in built:
                # write aside, then rename: a running process that has the old
                # library mapped keeps its (unlinked) copy instead of crashing
                tmp_copy = d / (lib.name + ".tmp")
                tmp_copy.write_bytes(lib.read_bytes())
                os.replace(tmp_copy, d / lib.name)
        super().run()

    def build_c(self, tmp: Path) -> Path:
        cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
        objs = []
        for src, extra in C_SOURCES:
            obj = tmp / (Path(src).stem + ".o")
            run(cc + C_FLAGS + extra + ["-c", src, "-o", obj])
            objs.append(obj)
        lib = tmp / "libengram_c.so"
        run(cc + ["-shared", "-o", lib] + objs + ["-lm"])
        return lib

    def build_zig(self, tmp: Path) -> list:
        libs = []
        cache = tmp / "zig-cache"
        for isa, cpu in ZIG_LEVELS.items():
            lib = tmp / f"libengram_zig_{isa}.so"
            target = "x86_64-linux-none" if X86 else "native-linux-none"
            run([sys.executable, "-m", "ziglang", "build-lib", "-dynamic", "-O", "ReleaseFast",
                 "-target", target, f"-mcpu={cpu}", "-fPIC", "zig/src/engram.zig",
                 "--cache-dir", cache, "--global-cache-dir", cache, f"-femit-bin={lib}"])
            libs.append(lib)
        return libs


def generate():
    """Bring the generated views of the layout schema and of the kernel ABI (engram.h) up to
    date before anything is compiled, so a changed prototype cannot build stale bindings."""
    for tool in ("tools/gen_layout.py", "tools/gen_abi.py"):
        run([sys.executable, tool])


def extensions():
    from Cython.Build import cythonize
    generate()   # the Cython drivers cimport the generated _cy/abi.pxd
    import numpy
    exts = [Extension(f"engram.kernels._cy.{name}", [f"engram/kernels/_cy/{name}.pyx"],
                      include_dirs=["csrc/include", numpy.get_include()], extra_compile_args=["-O3"],
                      define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])
            for name in ("scan", "spread", "rank", "csr", "stream", "metrics", "trace")]
    return cythonize(exts, language_level=3, compiler_directives={
        "boundscheck": False, "wraparound": False, "initializedcheck": False})


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildNative})

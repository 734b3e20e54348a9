"""Build engram's native parts: the C kernel library, the Zig kernel
libraries (one per ISA level) and the Cython drivers.

    pip install -e '.[dev]'        # everything
    ENGRAM_BUILD_ZIG=0 pip install -e .   # without Zig (the rollback path)

The libraries are plain shared objects loaded with ctypes, not Python
extensions, so they are built here and placed in LIB_DIR. Flags are portable:
each ISA variant gets its own -m flags and the CPU is probed at run time;
nothing is built with -march=native.

Every compile (C translation unit, Zig variant, Cython module) is one job on a
thread pool of os.cpu_count() workers, each printing a line when it starts and
ends. An in-place output (editable install, build_ext --inplace) keeps a hash
of its inputs beside it; an output whose inputs are unchanged is not rebuilt
(build_ext --force rebuilds it).
"""
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from functools import partial
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError

ROOT = Path(__file__).resolve().parent
# Package paths, relative to ROOT. Moving the Cython sources or the ctypes
# libraries is a change here only.
PYX_DIR = Path("engram", "kernels", "_cy")
CY_MODULES = ("scan", "spread", "rank", "csr", "stream", "metrics", "trace")
LIB_DIR = Path("engram", "kernels", "lib")

X86 = platform.machine().lower() in ("x86_64", "amd64")
JOBS = os.cpu_count() or 1
STAMP = ".inputs.sha256"  # beside an in-place output: the hash of what it was built from

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
# Widest first: the Zig builds are the longest jobs and the widest is the longest of them.
ZIG_LEVELS = ({"avx512": "x86_64_v4-prefer_256_bit", "avx2": "x86_64_v3", "scalar": "baseline"} if X86
              else {"scalar": "baseline"})
# Kept across installs (rm -rf build clears them): Zig then builds each variant's compiler_rt
# once, and the C that Cython generates stays out of the source tree.
ZIG_CACHE = ROOT / "build" / "zig-cache"
CY_C_DIR = Path("build", "cython")
CY_DIRECTIVES = {"boundscheck": False, "wraparound": False, "initializedcheck": False}

_print_lock = threading.Lock()


def say(msg: str):
    with _print_lock:
        print(msg, flush=True)


class CommandFailed(Exception):
    def __init__(self, cmd, proc):
        super().__init__(f"  $ {shlex.join(cmd)}\n  exit status {proc.returncode}\n{proc.stdout}{proc.stderr}")


def run(cmd):
    """Run one build command; its output (warnings) is printed with it, at once, so parallel
    jobs do not interleave. A failure raises CommandFailed with the command and full output."""
    cmd = [str(c) for c in cmd]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise CommandFailed(cmd, proc)
    say(f"  $ {shlex.join(cmd)}\n{proc.stdout}{proc.stderr}".rstrip())


def tool_version(cmd) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout
    except OSError as e:  # a missing tool fails in its build job, with the command shown
        return str(e)


def inputs_hash(files, *settings) -> str:
    """What an output depends on: setup.py (flags, commands), the input files, tool versions."""
    h = hashlib.sha256(repr(settings).encode())
    for f in [Path(__file__).resolve(), *sorted(files)]:
        h.update(f"\0{f.relative_to(ROOT)}\0{f.stat().st_size}\0".encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def tree(top: str):
    return [p for p in (ROOT / top).rglob("*") if p.is_file()]


def up_to_date(dest: Path, key: str) -> bool:
    stamp = dest.with_name(dest.name + STAMP)
    return dest.exists() and stamp.exists() and stamp.read_text() == key


def install(src: Path, dest: Path, key: str | None):
    """Copy src to dest by writing aside and renaming: a running process that has the old
    file mapped keeps its (unlinked) copy instead of crashing. The stamp goes last, so an
    interrupted install is rebuilt next time."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    aside = dest.with_name(dest.name + ".tmp")
    shutil.copy2(src, aside)
    os.replace(aside, dest)
    if key is not None:
        aside.write_text(key)
        os.replace(aside, dest.with_name(dest.name + STAMP))


class Job:
    def __init__(self, label: str, fn, after=()):
        self.label, self.fn, self.after = label, fn, list(after)


def run_jobs(jobs: list):
    """Run jobs on at most JOBS threads; a job starts once the jobs in its `after` are done.
    Jobs wait here, not in the pool's queue, so after a failure none starts: the running
    ones finish and the build fails."""
    if not jobs:
        say("native build: everything is up to date")
        return
    n, workers, t0 = len(jobs), min(JOBS, len(jobs)), time.monotonic()

    def work(job, tag):
        t = time.monotonic()
        try:
            job.fn()
        except Exception as e:
            # a command's failure carries its output; Cython and distutils printed theirs already
            detail = e if isinstance(e, CommandFailed) else f"  {type(e).__name__}: {e} (its output is above)"
            say(f"{tag} {job.label} FAILED after {time.monotonic() - t:.1f} s\n{detail}")
            raise
        say(f"{tag} {job.label} done in {time.monotonic() - t:.1f} s")

    waiting, done, failed, running = list(jobs), set(), [], {}
    with ThreadPoolExecutor(workers) as pool:
        while True:
            ready = [] if failed else [j for j in waiting if all(a in done for a in j.after)]
            for job in ready[:workers - len(running)]:
                waiting.remove(job)
                tag = f"[{n - len(waiting)}/{n}]"
                say(f"{tag} {job.label} ...")
                running[pool.submit(work, job, tag)] = job
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                job = running.pop(fut)
                if fut.exception():
                    failed.append(job)
                else:
                    done.add(job)
    say(f"native build: {len(done)} of {n} jobs done in {time.monotonic() - t0:.1f} s, {workers} at a time")
    if failed:
        raise CompileError("native build failed: " + ", ".join(j.label for j in failed) + " (output above)")


class BuildNative(build_ext):
    """build_ext that also builds the ctypes libraries, every compile in one job pool."""

    def run(self):
        # setuptools clears inplace while it builds into build_lib; remember where outputs go
        self.into_source = self.inplace or self.editable_mode
        generate()
        super().run()

    def build_extensions(self):
        self.check_extensions_list(self.extensions)
        run_jobs(self.library_jobs() + self.cython_jobs())

    def copy_extensions_to_source(self):
        """Nothing left to do: each Cython job put its module in place (written aside and renamed)."""

    def key_if_cached(self, *args) -> str | None:
        # only in-place outputs are reused; a wheel is built from scratch and carries no stamps
        return inputs_hash(*args) if self.into_source else None

    def library_jobs(self) -> list:
        out = ROOT / LIB_DIR if self.into_source else Path(self.build_lib).resolve() / LIB_DIR
        tmp = Path(self.build_temp).resolve() / "native"
        tmp.mkdir(parents=True, exist_ok=True)
        cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
        libs = {}  # name: (inputs hash or None, jobs that build it); the long Zig jobs go first
        if os.environ.get("ENGRAM_BUILD_ZIG", "1") != "0":
            zig = [sys.executable, "-m", "ziglang"]
            zig_version = tool_version(zig + ["version"])
            for isa, cpu in ZIG_LEVELS.items():
                libs[f"libengram_zig_{isa}.so"] = (self.key_if_cached(tree("zig/src"), X86, cpu, zig_version),
                                                   partial(self.zig_jobs, zig, isa, cpu, tmp))
        else:
            say("ENGRAM_BUILD_ZIG=0: skipping the Zig kernels")
        libs["libengram_c.so"] = (self.key_if_cached(tree("csrc"), X86, cc, tool_version(cc + ["--version"])),
                                  partial(self.c_jobs, cc, tmp))
        if out.is_dir():
            keep = {name + suffix for name in libs for suffix in ("", STAMP)}
            for stale in out.glob("libengram_*"):
                if stale.name not in keep:
                    stale.unlink()
        jobs = []
        for name, (key, make_jobs) in libs.items():
            if key is not None and not self.force and up_to_date(out / name, key):
                say(f"{name}: inputs unchanged, not rebuilt")
            else:
                jobs += make_jobs(out / name, key)
        return jobs

    def c_jobs(self, cc, tmp: Path, dest: Path, key) -> list:
        objs, compiles = [], []
        for src, extra in C_SOURCES:
            obj = tmp / (Path(src).stem + ".o")
            objs.append(obj)
            compiles.append(Job(f"c {Path(src).name}", partial(run, cc + C_FLAGS + extra + ["-c", src, "-o", obj])))
        lib = tmp / dest.name

        def link():
            run(cc + ["-shared", "-o", lib] + objs + ["-lm"])
            install(lib, dest, key)
        return compiles + [Job(f"c link {dest.name}", link, after=compiles)]

    def zig_jobs(self, zig, isa: str, cpu: str, tmp: Path, dest: Path, key) -> list:
        lib = tmp / dest.name
        target = "x86_64-linux-none" if X86 else "native-linux-none"

        def build():
            run(zig + ["build-lib", "-dynamic", "-O", "ReleaseFast", "-target", target, f"-mcpu={cpu}", "-fPIC",
                       "zig/src/engram.zig", "--cache-dir", ZIG_CACHE, "--global-cache-dir", ZIG_CACHE,
                       f"-femit-bin={lib}"])
            install(lib, dest, key)
        return [Job(f"zig {isa}", build)]

    def cython_jobs(self) -> list:
        import Cython
        import numpy
        stale = []
        for ext in self.extensions:
            dest = ROOT / PYX_DIR / Path(self.get_ext_filename(ext.name)).name
            # what the module cimports counts too: the generated abi.pxd, the shared .pxd files
            local = [p for d in ext.include_dirs if not os.path.isabs(d) for p in tree(d)]
            local += sorted((ROOT / PYX_DIR).glob("*.pxd"))
            key = self.key_if_cached(local + [ROOT / s for s in ext.sources], ext.name, sys.version,
                                     Cython.__version__, numpy.__version__,
                                     getattr(self.compiler, "compiler_so", None),
                                     getattr(self.compiler, "linker_so", None))
            if key is not None and not self.force and up_to_date(dest, key):
                say(f"{ext.name}: inputs unchanged, not rebuilt")
            else:
                stale.append((ext, dest, key))
        if not stale:
            return []
        # Cython's compiler is not known to be thread-safe: one job translates every stale module
        translate = Job(f"cythonize {len(stale)} module(s)", partial(self.cythonize, [e for e, _, _ in stale]))
        return [translate] + [Job(f"cython {ext.name}", partial(self.build_one, ext, dest, key), after=[translate])
                              for ext, dest, key in stale]

    def cythonize(self, exts):
        import numpy
        from Cython.Build import cythonize
        # force: their inputs changed by hash; Cython's own check compares only mtimes
        c_exts = {e.name: e for e in cythonize(exts, build_dir=str(CY_C_DIR), force=True, language_level=3,
                                               compiler_directives=CY_DIRECTIVES)}
        for ext in exts:
            ext.sources = c_exts[ext.name].sources
            ext.include_dirs.append(numpy.get_include())

    def build_one(self, ext, dest: Path, key):
        self.build_extension(ext)
        if self.into_source:
            install(Path(self.build_lib, self.get_ext_filename(ext.name)), dest, key)


def generate():
    """Bring the generated views of the layout schema and of the kernel ABI (engram.h) up to
    date before anything is compiled, so a changed prototype cannot build stale bindings."""
    for tool in ("tools/gen_layout.py", "tools/gen_abi.py"):
        subprocess.run([sys.executable, tool], cwd=ROOT, check=True)


def extensions():
    # translated to C by the build job, not here: setup.py also runs for pip's metadata hooks
    package = ".".join(PYX_DIR.parts)
    return [Extension(f"{package}.{name}", [str(PYX_DIR / f"{name}.pyx")], include_dirs=["csrc/include"],
                      extra_compile_args=["-O3"], define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])
            for name in CY_MODULES]


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildNative})

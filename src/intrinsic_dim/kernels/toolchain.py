"""Compile the native CPU kernels (plain C with OpenMP) into one shared library per instruction set.

:func:`ensure_library` finds a built library (in the package directory, where
``python -m intrinsic_dim.kernels.build`` puts it, or in a user cache directory) or builds one into
the cache. A library's name carries a digest of the sources and flags, so an edited source is never
served by a stale build.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from intrinsic_dim import rng

PACKAGE_DIR = Path(__file__).resolve().parent
CSRC = PACKAGE_DIR / "csrc"
SOURCES = ("fastfood.c", "fastfood_impl.h")
BASE_FLAGS = ("-O3", "-fopenmp", "-shared", "-fPIC", "-Wno-psabi")
ISA_FLAGS = {
    "avx512": ("-mavx2", "-mfma", "-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw"),
    "avx2": ("-mavx2", "-mfma"),
    "generic": (),
}
ISA_CPU_FLAGS = {
    "avx512": {"avx2", "fma", "avx512f", "avx512dq", "avx512vl", "avx512bw"},
    "avx2": {"avx2", "fma"},
    "generic": set(),
}


def rng_defines() -> tuple[str, ...]:
    """The generator constants of :mod:`intrinsic_dim.rng` as compiler definitions (the C source has
    none of its own; GAUSS_SCALE as an exact hexadecimal float)."""
    ints = {"GOLDEN": rng.GOLDEN, "MIX1": rng.MIX1, "MIX2": rng.MIX2, "STREAM_SIGN": rng.STREAM_SIGN,
            "STREAM_GAUSS": rng.STREAM_GAUSS, "STREAM_PERM": rng.STREAM_PERM, "PERM_ROUNDS": rng.PERM_ROUNDS,
            "GAUSS_CENTER": rng.GAUSS_CENTER}
    return tuple(f"-DFF_{k}={v:#x}ULL" if v >= 1 << 31 else f"-DFF_{k}={v}" for k, v in ints.items()) + (
        f"-DFF_GAUSS_SCALE={float(rng.GAUSS_SCALE).hex()}",)


def flags(isa: str) -> tuple[str, ...]:
    """Every compiler flag of the ``isa`` variant, the generator constants included."""
    return BASE_FLAGS + ISA_FLAGS[isa] + rng_defines()


class BuildError(RuntimeError):
    """The native library could not be compiled."""


def cpuinfo(field: str) -> str | None:
    """The value of the first ``field`` line of /proc/cpuinfo (e.g. 'flags', 'model name'), or None where unknown."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    """The CPU feature flags of this machine (from /proc/cpuinfo; empty where unknown)."""
    return set((cpuinfo("flags") or "").split())


NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
"""CPU flags with which torch runs bfloat16 matrix products natively; without them it emulates them, far slower."""


def native_bf16() -> list[str]:
    """This CPU's native bfloat16 instruction sets (empty: bf16 autocast is emulated here)."""
    return sorted(cpu_flags() & NATIVE_BF16_FLAGS)


def supported_isas(flags: set[str] | None = None) -> list[str]:
    """The instruction-set variants this CPU can run, best first ('generic' always last)."""
    have = cpu_flags() if flags is None else flags
    return [isa for isa, need in ISA_CPU_FLAGS.items() if need <= have]


def compiler() -> str | None:
    """The C compiler to use: $CC, else gcc, else cc."""
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")


def library_name(isa: str) -> str:
    """File name of the library built for ``isa`` from the current sources."""
    h = hashlib.sha256()
    for name in SOURCES:
        h.update((CSRC / name).read_bytes())
    h.update(" ".join(flags(isa)).encode())
    return f"_fastfood_{isa}_{h.hexdigest()[:12]}.so"


def cache_dir() -> Path:
    """Where lazily built libraries go: $INTRINSIC_DIM_CACHE, else the XDG cache directory."""
    if os.environ.get("INTRINSIC_DIM_CACHE"):
        return Path(os.environ["INTRINSIC_DIM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "intrinsic_dim"


def build(isa: str, out_dir: Path) -> Path:
    """Compile the library for ``isa`` into ``out_dir`` (atomically) and return its path."""
    cc = compiler()
    if cc is None:
        raise BuildError("no C compiler found (install gcc or set CC)")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / library_name(isa)
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=out_dir)
    os.close(fd)
    cmd = [cc, *flags(isa), "-o", tmp, str(CSRC / "fastfood.c"), "-lm"]
    try:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as e:
            raise BuildError(f"cannot run the C compiler {cc!r}: {e}") from e
        if proc.returncode != 0:
            raise BuildError(f"{' '.join(cmd)} failed:\n{proc.stderr.strip()}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def find_library(isa: str) -> Path | None:
    """An existing library for ``isa`` built from the current sources, if any."""
    name = library_name(isa)
    for d in (PACKAGE_DIR, cache_dir()):
        if (d / name).is_file():
            return d / name
    return None


def ensure_library(isa: str) -> Path:
    """The library for ``isa``: found, or built into the cache directory (clearing stale builds)."""
    found = find_library(isa)
    if found is not None:
        return found
    if cache_dir().is_dir():
        remove_stale(cache_dir())
    return build(isa, cache_dir())


def remove_stale(out_dir: Path) -> list[Path]:
    """Delete libraries in ``out_dir`` built from other sources; return what was deleted."""
    current = {library_name(isa) for isa in ISA_FLAGS}
    stale = [p for p in out_dir.glob("_fastfood_*.so") if p.name not in current]
    for p in stale:
        p.unlink()
    return stale

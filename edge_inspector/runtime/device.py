"""Is there a usable CUDA device and TensorRT here?  Answered without letting TensorRT touch the GPU.

The CUDA device is probed through the driver library with ``ctypes`` (no Python package needed,
works the same on Jetson and x86) *before* TensorRT is used, because creating a TensorRT runtime
or builder without a usable device can crash the process.  ``tensorrt`` is imported lazily.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass
from types import ModuleType

from edge_inspector.errors import UserError

INSTALL_HINT = "pip install '.[tensorrt]', or on Jetson use JetPack's TensorRT through a venv made with --system-site-packages"


@dataclass(frozen=True)
class CudaDevice:
    """The GPU a plan is built for; name and compute capability go into the cache key."""

    index: int
    name: str
    compute_capability: str  # "8.7" (Orin), "9.0" (H100)


class CudaUnavailable(Exception):
    """No usable CUDA device; ``str()`` says why in a few words."""


def probe_cuda_device(index: int = 0) -> CudaDevice:
    """Ask the CUDA driver (``libcuda``) directly; raises :class:`CudaUnavailable` with a reason."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")  # the driver; on Jetson it lives in /usr/lib/aarch64-linux-gnu/tegra
    except OSError:
        raise CudaUnavailable("no CUDA device (libcuda.so.1 not found: no NVIDIA driver installed)") from None

    def check(rc: int, what: str) -> None:
        if rc != 0:
            text = ctypes.c_char_p()
            lib.cuGetErrorName(rc, ctypes.byref(text))
            raise CudaUnavailable(f"no CUDA device ({what} failed: {(text.value or b'?').decode()} [{rc}])")

    check(lib.cuInit(0), "cuInit")
    count = ctypes.c_int(0)
    check(lib.cuDeviceGetCount(ctypes.byref(count)), "cuDeviceGetCount")
    if count.value <= index:
        raise CudaUnavailable(f"no CUDA device (driver reports {count.value} device(s), index {index} requested)")
    dev = ctypes.c_int(0)
    check(lib.cuDeviceGet(ctypes.byref(dev), index), "cuDeviceGet")
    name = ctypes.create_string_buffer(256)
    check(lib.cuDeviceGetName(name, 256, dev), "cuDeviceGetName")
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    check(lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev), "cuDeviceGetAttribute")  # CC major
    check(lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev), "cuDeviceGetAttribute")  # CC minor
    return CudaDevice(index, name.value.decode(errors="replace").strip(), f"{major.value}.{minor.value}")


def import_tensorrt() -> ModuleType:
    """Import ``tensorrt`` (>= 10); raises :class:`CudaUnavailable`-style ``ImportError`` with a reason."""
    try:
        import tensorrt as trt  # noqa: PLC0415 - deliberately lazy
    except Exception as exc:  # ImportError, or OSError from a wheel without its native libraries
        raise ImportError(f"tensorrt not installed ({type(exc).__name__}: {exc}; {INSTALL_HINT})") from exc
    version = getattr(trt, "__version__", "0")
    if int(version.split(".")[0]) < 10:
        raise ImportError(f"tensorrt {version} found, 10.x needed (TensorRT 10.3 ships with JetPack 6)")
    return trt


@functools.lru_cache(maxsize=1)
def tensorrt_available() -> tuple[bool, str]:
    """``(True, "")`` if a CUDA device, TensorRT >= 10 and a CUDA binding (cuda-python or pycuda) are
    usable, else ``(False, why)``."""
    try:
        probe_cuda_device()
    except CudaUnavailable as exc:
        return False, str(exc)
    try:
        import_tensorrt()
    except ImportError as exc:
        return False, str(exc)
    from edge_inspector.runtime.cuda import choose_binding  # noqa: PLC0415

    try:
        choose_binding()
    except ImportError as exc:
        return False, str(exc)
    return True, ""


def require_tensorrt() -> tuple[ModuleType, CudaDevice]:
    """TensorRT module and device, or a :class:`UserError` saying why TensorRT cannot run here."""
    ok, reason = tensorrt_available()
    if not ok:
        raise UserError(f"TensorRT not available: {reason}")
    return import_tensorrt(), probe_cuda_device()

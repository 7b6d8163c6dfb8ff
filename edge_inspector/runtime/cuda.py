"""Device memory, pinned host memory and streams for the TensorRT engine, behind one small interface.

Two implementations, whichever binding is installed (``$EDGE_INSPECTOR_CUDA`` = ``cuda-python`` or
``pycuda`` picks one when both are):

- :class:`CudaPythonMemory`: NVIDIA's cuda-python runtime API (``cuda.bindings.runtime``, formerly
  ``cuda.cudart``).  Prebuilt wheels for x86-64 and aarch64; the runtime API works on the device's
  primary context, the one TensorRT uses, so nothing is pushed or popped.
- :class:`PyCudaMemory`: pycuda, the binding the design names, through ``pycuda.autoprimaryctx``
  (not ``autoinit``): it retains the device's *primary* context, so TensorRT, which uses the
  runtime API and hence the primary context, sees the same memory.  pycuda's driver calls need
  that context current in the calling thread; inference runs on worker threads, so every call
  here makes it current around itself (a push/pop of the context already retained: no new
  context is ever created).

The engine only uses :class:`CudaMemory`'s methods: allocate device and pinned host buffers by
size, copy between them on a stream, synchronise, free.  Pointers are plain ints, streams are
whatever the binding uses, and :meth:`CudaMemory.handle` gives the int TensorRT's
``execute_async_v3`` wants.  Nothing here is imported before an engine is created.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from typing import Any, Iterator, Protocol

BINDINGS = ("cuda-python", "pycuda")
INSTALL = ("pip install 'cuda-python>=12.2,<13' (prebuilt wheels), or pycuda (built against the CUDA toolkit; "
           "on Jetson: pip install pycuda with JetPack's /usr/local/cuda on PATH)")


class CudaMemory(Protocol):
    binding: str

    def malloc(self, nbytes: int) -> int: ...
    def malloc_host(self, nbytes: int) -> int: ...  # page-locked: truly asynchronous copies
    def free(self, ptr: int) -> None: ...
    def free_host(self, ptr: int) -> None: ...
    def stream_create(self) -> Any: ...
    def stream_destroy(self, stream: Any) -> None: ...
    def handle(self, stream: Any) -> int: ...
    def copy_to_device(self, dst: int, src: int, nbytes: int, stream: Any) -> None: ...
    def copy_to_host(self, dst: int, src: int, nbytes: int, stream: Any) -> None: ...
    def synchronize(self, stream: Any) -> None: ...


def installed_bindings() -> list[str]:
    """The CUDA bindings importable here, in order of preference (without importing them)."""
    found = []
    if importlib.util.find_spec("cuda") is not None and (
            _has("cuda.bindings") or _has("cuda.cudart")):
        found.append("cuda-python")
    if importlib.util.find_spec("pycuda") is not None:
        found.append("pycuda")
    return found


def _has(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def choose_binding(wanted: str | None = None) -> str:
    """The binding to use: ``wanted`` (or ``$EDGE_INSPECTOR_CUDA``) when installed, else the first installed.

    Raises ImportError with what to install when none is (or the wanted one is not)."""
    wanted = wanted or os.environ.get("EDGE_INSPECTOR_CUDA") or None
    if wanted is not None and wanted not in BINDINGS:
        raise ImportError(f"EDGE_INSPECTOR_CUDA={wanted!r}: expected one of {', '.join(BINDINGS)}")
    found = installed_bindings()
    if wanted is not None:
        if wanted not in found:
            raise ImportError(f"{wanted} not installed (EDGE_INSPECTOR_CUDA asks for it; {INSTALL})")
        return wanted
    if not found:
        raise ImportError(f"no CUDA binding installed: cuda-python or pycuda moves tensors to the GPU; {INSTALL}")
    return found[0]


def open_memory(device_index: int = 0, wanted: str | None = None) -> CudaMemory:
    """The device-memory layer over the chosen binding, on ``device_index``."""
    binding = choose_binding(wanted)
    return CudaPythonMemory(device_index) if binding == "cuda-python" else PyCudaMemory(device_index)


# ---------------------------------------------------------------------------- cuda-python
def _import_cudart() -> Any:
    try:
        from cuda.bindings import runtime  # noqa: PLC0415 - cuda-python >= 12.6
    except ImportError:
        from cuda import cudart as runtime  # type: ignore[no-redef]  # noqa: PLC0415
    return runtime


class CudaPythonMemory:
    """The few CUDA runtime calls the engine needs, each checked and raising with the CUDA error name."""

    binding = "cuda-python"

    def __init__(self, device_index: int = 0) -> None:
        self.rt = _import_cudart()
        self.call("cudaSetDevice", device_index)

    def call(self, fn: str, *args: Any) -> Any:
        result = getattr(self.rt, fn)(*args)
        err, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if int(err) != 0:
            name = self.rt.cudaGetErrorName(err)[1]
            raise RuntimeError(f"CUDA {fn} failed: {name.decode() if isinstance(name, bytes) else name}")
        return rest[0] if len(rest) == 1 else (rest or None)

    def malloc(self, nbytes: int) -> int:
        return int(self.call("cudaMalloc", max(nbytes, 1)))

    def malloc_host(self, nbytes: int) -> int:
        return int(self.call("cudaMallocHost", max(nbytes, 1)))

    def free(self, ptr: int) -> None:
        self.call("cudaFree", ptr)

    def free_host(self, ptr: int) -> None:
        self.call("cudaFreeHost", ptr)

    def stream_create(self) -> Any:
        return self.call("cudaStreamCreate")

    def stream_destroy(self, stream: Any) -> None:
        self.call("cudaStreamDestroy", stream)

    def handle(self, stream: Any) -> int:
        return int(stream)

    def copy_to_device(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self.call("cudaMemcpyAsync", dst, src, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)

    def copy_to_host(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self.call("cudaMemcpyAsync", dst, src, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)

    def synchronize(self, stream: Any) -> None:
        self.call("cudaStreamSynchronize", stream)


# ---------------------------------------------------------------------------- pycuda
class PyCudaMemory:
    """pycuda on the device's primary context (``pycuda.autoprimaryctx``), current around every call.

    pycuda owns what it allocates as Python objects; they are kept here by pointer until freed, so
    the engine can hold plain ints like with the runtime API.
    """

    binding = "pycuda"

    def __init__(self, device_index: int = 0) -> None:
        import pycuda.driver as drv  # noqa: PLC0415

        if device_index != 0:  # autoprimaryctx retains device 0 (or $CUDA_DEVICE); anything else explicitly
            drv.init()
            self.context = drv.Device(device_index).retain_primary_context()
        else:
            import pycuda.autoprimaryctx as primary  # noqa: PLC0415 - retains and pushes the primary context

            self.context = primary.context
        self.drv = drv
        self._device: dict[int, Any] = {}
        self._host: dict[int, Any] = {}

    @contextlib.contextmanager
    def _current(self) -> Iterator[None]:
        self.context.push()
        try:
            yield
        finally:
            self.drv.Context.pop()

    def malloc(self, nbytes: int) -> int:
        with self._current():
            alloc = self.drv.mem_alloc(max(nbytes, 1))
        self._device[int(alloc)] = alloc
        return int(alloc)

    def malloc_host(self, nbytes: int) -> int:
        import numpy as np  # noqa: PLC0415

        with self._current():
            buf = self.drv.pagelocked_empty(max(nbytes, 1), np.uint8)
        ptr = int(buf.ctypes.data)
        self._host[ptr] = buf
        return ptr

    def free(self, ptr: int) -> None:
        with self._current():
            self._device.pop(ptr).free()

    def free_host(self, ptr: int) -> None:
        with self._current():
            self._host.pop(ptr).base.free()

    def stream_create(self) -> Any:
        with self._current():
            return self.drv.Stream()

    def stream_destroy(self, stream: Any) -> None:
        with self._current():
            stream.synchronize()  # pycuda destroys the stream when the object goes

    def handle(self, stream: Any) -> int:
        return int(stream.handle)

    def _host_view(self, ptr: int, nbytes: int) -> Any:
        for base, buf in self._host.items():
            if base <= ptr and ptr + nbytes <= base + buf.nbytes:
                return buf[ptr - base : ptr - base + nbytes]
        raise RuntimeError(f"CUDA copy from host memory this layer did not allocate (0x{ptr:x}, {nbytes} bytes)")

    def copy_to_device(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        with self._current():
            self.drv.memcpy_htod_async(dst, self._host_view(src, nbytes), stream)

    def copy_to_host(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        with self._current():
            self.drv.memcpy_dtoh_async(self._host_view(dst, nbytes), src, stream)

    def synchronize(self, stream: Any) -> None:
        with self._current():
            stream.synchronize()

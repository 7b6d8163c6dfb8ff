"""The TensorRT engine's device-memory layer: pycuda or cuda-python, whichever is installed.

Off the GPU: which binding is chosen from what is importable (real import machinery; a binding is
"installed" here by putting a package of that name on sys.path), the messages when none or the
wrong one is, and pycuda's pointer book-keeping on real pinned-memory stand-ins (numpy buffers).
On a GPU (``pytest -m gpu``), each installed binding moves a buffer host -> device -> device ->
host and reports an impossible allocation by its CUDA error name.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edge_inspector.runtime import cuda
from edge_inspector.runtime.cuda import PyCudaMemory, choose_binding, installed_bindings


def _fake_package(root: Path, name: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text("")


@pytest.fixture
def only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Make exactly the given bindings importable (the real ones hidden, stand-in packages shown)."""

    def make(*names: str) -> None:
        real = {n for n in ("cuda", "pycuda") if n in sys.modules}
        for mod in list(sys.modules):
            if mod.split(".")[0] in real:
                monkeypatch.delitem(sys.modules, mod)
        paths = [p for p in sys.path if not any((Path(p) / n).exists() for n in ("cuda", "pycuda"))]
        monkeypatch.setattr(sys, "path", [str(tmp_path), *paths])
        for n in names:
            if n == "cuda-python":
                _fake_package(tmp_path, "cuda")
                _fake_package(tmp_path / "cuda", "bindings")
            else:
                _fake_package(tmp_path, "pycuda")
        import importlib

        importlib.invalidate_caches()

    monkeypatch.delenv("EDGE_INSPECTOR_CUDA", raising=False)
    return make


def test_none_installed_says_what_to_install(only) -> None:
    only()
    assert installed_bindings() == []
    with pytest.raises(ImportError, match=r"no CUDA binding installed: cuda-python or pycuda .*pip install"):
        choose_binding()


def test_whichever_is_installed_is_used(only, monkeypatch: pytest.MonkeyPatch) -> None:
    only("pycuda")
    assert installed_bindings() == ["pycuda"] and choose_binding() == "pycuda"
    monkeypatch.setenv("EDGE_INSPECTOR_CUDA", "cuda-python")
    with pytest.raises(ImportError, match="cuda-python not installed .EDGE_INSPECTOR_CUDA asks for it"):
        choose_binding()


def test_both_installed_prefers_cuda_python_unless_told(only, monkeypatch: pytest.MonkeyPatch) -> None:
    only("cuda-python", "pycuda")
    assert choose_binding() == "cuda-python"
    monkeypatch.setenv("EDGE_INSPECTOR_CUDA", "pycuda")
    assert choose_binding() == "pycuda"
    monkeypatch.setenv("EDGE_INSPECTOR_CUDA", "cupy")
    with pytest.raises(ImportError, match="EDGE_INSPECTOR_CUDA='cupy': expected one of cuda-python, pycuda"):
        choose_binding()


def test_pycuda_layer_finds_the_pinned_buffer_behind_a_pointer() -> None:
    layer = object.__new__(PyCudaMemory)  # the book-keeping only: no driver call
    a, b = np.zeros(64, np.uint8), np.zeros(32, np.uint8)
    layer._host = {int(a.ctypes.data): a, int(b.ctypes.data): b}
    view = layer._host_view(int(a.ctypes.data) + 8, 16)
    view[:] = 7
    assert a[8:24].tolist() == [7] * 16 and not a[:8].any() and not b.any()
    with pytest.raises(RuntimeError, match="host memory this layer did not allocate"):
        layer._host_view(int(a.ctypes.data) + 60, 16)  # runs past the end of the buffer


def test_importing_the_engine_needs_no_binding() -> None:
    import subprocess

    code = ("import sys, edge_inspector.runtime.tensorrt, edge_inspector.runtime.cuda;"
            "print(any(m.split('.')[0] in ('cuda', 'pycuda', 'tensorrt') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def _gpu_or_skip() -> None:
    from edge_inspector.runtime.device import CudaUnavailable, probe_cuda_device

    try:
        probe_cuda_device()
    except CudaUnavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.gpu
@pytest.mark.parametrize("binding", cuda.BINDINGS)
def test_buffers_round_trip_through_pinned_and_device_memory(binding: str) -> None:
    _gpu_or_skip()
    if binding not in installed_bindings():
        pytest.skip(f"{binding} not installed ({cuda.INSTALL})")
    import ctypes

    mem = cuda.open_memory(0, binding)
    n = 4000 * 4
    dev_a, dev_b = mem.malloc(n), mem.malloc(n)
    host_a, host_b = mem.malloc_host(n), mem.malloc_host(n)
    stream = mem.stream_create()
    try:
        src = np.frombuffer((ctypes.c_ubyte * n).from_address(host_a), np.float32)
        dst = np.frombuffer((ctypes.c_ubyte * n).from_address(host_b), np.float32)
        src[:] = np.random.default_rng(7).normal(size=4000)
        mem.copy_to_device(dev_a, host_a, n, stream)
        mem.copy_to_host(host_b, dev_a, n, stream)  # through the device and back
        mem.synchronize(stream)
        assert np.array_equal(dst, src) and mem.handle(stream) != 0
        with pytest.raises(Exception, match="(?i)out of memory|MemoryAllocation"):
            mem.malloc(1 << 50)
    finally:
        mem.stream_destroy(stream)
        for p in (dev_a, dev_b):
            mem.free(p)
        for p in (host_a, host_b):
            mem.free_host(p)

"""A stand-in for CuPy on machines without a GPU, to test numpy_gpt's device="cuda" path.

NumPy does the arithmetic, so results must equal the CPU run bit for bit, but its arrays
(DeviceArray) behave like CuPy's in the way that breaks CPU/GPU code: they refuse to mix with
NumPy arrays. A NumPy array created inside the model (np.zeros where xp.zeros was meant) or
a host array passed in without a transfer (a dropout mask, token ids) meets a device array
sooner or later, and that operation raises TypeError, as it would on a GPU. Transfers are
explicit and copy: asarray/array (host -> device), asnumpy (device -> host).

What it cannot check: that CuPy implements every call (the names used were checked against
CuPy 14), speed, and the GPU's float rounding. Those need a real GPU (python -m parity
--device cuda, python -m bench --backends cupy-f32).

    with fake_cupy.installed():         # sys.modules["cupy"] (and cupyx) during the block
        model = GPT(config, device="cuda")
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import sys
import types
from collections.abc import Iterator
from typing import Any

import numpy as np


class DeviceArray(np.ndarray):
    """An ndarray that will not mix with plain (host) ndarrays in ufuncs or functions."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        _refuse_host(inputs, out or ())
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o) for o in out)
        result = getattr(ufunc, method)(*_unwrap(inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        _refuse_host(args, kwargs.values())
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def __getitem__(self, index):  # strict: host index arrays must be transferred first
        _refuse_host(index if isinstance(index, tuple) else (index,))
        return super().__getitem__(_unwrap(index))

    def __setitem__(self, index, value):
        _refuse_host(index if isinstance(index, tuple) else (index,), (value,))
        super().__setitem__(_unwrap(index), _unwrap(value))


def _host_arrays(values: Any) -> Iterator[np.ndarray]:
    for v in values:
        if type(v) is np.ndarray:
            yield v
        elif isinstance(v, (list, tuple)):
            yield from _host_arrays(v)
        elif isinstance(v, dict):
            yield from _host_arrays(v.values())


def _refuse_host(*groups: Any) -> None:
    for group in groups:
        for a in _host_arrays(group):
            raise TypeError(f"a host numpy.ndarray {a.shape} {a.dtype} was mixed with device "
                            "arrays (CuPy raises here too): transfer it with xp.asarray")


def _unwrap(x: Any) -> Any:
    if isinstance(x, DeviceArray):
        return x.view(np.ndarray)
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def _wrap(x: Any) -> Any:
    if type(x) is np.ndarray:
        return x.view(DeviceArray)
    if isinstance(x, (list, tuple)):
        return type(x)(_wrap(v) for v in x)
    return x


class _Ufunc:
    """cupy.exp, cupy.add, ...: a NumPy ufunc that accepts device arrays only."""

    def __init__(self, ufunc: np.ufunc):
        self._ufunc = ufunc

    def __call__(self, *args, **kwargs):
        return self._run(self._ufunc, args, kwargs)

    def __getattr__(self, method: str):  # at, reduce, reduceat, accumulate, outer
        return lambda *args, **kwargs: self._run(getattr(self._ufunc, method), args, kwargs)

    @staticmethod
    def _run(fn, args, kwargs):
        _refuse_host(args, kwargs.values())
        return _wrap(fn(*_unwrap(args), **_unwrap(kwargs)))


def _function(fn):
    """cupy.<name> for a NumPy function: device arrays in, device arrays out."""
    def run(*args, **kwargs):
        _refuse_host(args, kwargs.values())
        return _wrap(fn(*_unwrap(args), **_unwrap(kwargs)))
    return run


def _make_module() -> tuple[types.ModuleType, dict[str, types.ModuleType]]:
    cupy = types.ModuleType("cupy")
    cupy.__doc__ = "fake CuPy (tests/fake_cupy.py): NumPy underneath, no host/device mixing"
    cupy.ndarray = DeviceArray
    cupy.asarray = lambda a, dtype=None: (
        a if isinstance(a, DeviceArray) and dtype in (None, a.dtype)
        else np.array(_unwrap(a), dtype=dtype).view(DeviceArray))
    cupy.array = lambda a, dtype=None, copy=True: np.array(_unwrap(a), dtype=dtype).view(
        DeviceArray)
    cupy.ascontiguousarray = lambda a, dtype=None: _function(np.ascontiguousarray)(
        cupy.asarray(a), dtype=dtype)
    cupy.asnumpy = lambda a: np.array(_unwrap(a))
    cupy.is_available = lambda: True
    cupy.get_array_module = lambda *arrays: (
        cupy if any(isinstance(a, DeviceArray) for a in arrays) else np)
    cupy.cuda = types.SimpleNamespace(
        Device=lambda *_: types.SimpleNamespace(synchronize=lambda: None))
    pool = types.SimpleNamespace(free_all_blocks=lambda: None, used_bytes=lambda: 0,
                                 total_bytes=lambda: 0)  # memory is NumPy's: none pooled
    cupy.get_default_memory_pool = lambda: pool

    def __getattr__(name: str) -> Any:  # everything else: numpy's, made device-only
        obj = getattr(np, name)
        if isinstance(obj, np.ufunc):
            return _Ufunc(obj)
        if callable(obj) and not isinstance(obj, type):
            return _function(obj)
        return obj  # dtypes, constants (float32, inf, newaxis)

    cupy.__getattr__ = __getattr__
    special = types.ModuleType("cupyx.scipy.special")
    from scipy.special import erf

    special.erf = _function(erf)
    cupyx = types.ModuleType("cupyx")
    cupyx_scipy = types.ModuleType("cupyx.scipy")
    cupyx.scipy, cupyx_scipy.special = cupyx_scipy, special
    modules = {"cupy": cupy, "cupyx": cupyx, "cupyx.scipy": cupyx_scipy,
               "cupyx.scipy.special": special}
    for name, module in modules.items():  # importlib.util.find_spec("cupy") finds it
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    return cupy, modules


@contextlib.contextmanager
def installed() -> Iterator[types.ModuleType]:
    """Make `import cupy` give the fake for the duration of the block."""
    cupy, modules = _make_module()
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield cupy
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module

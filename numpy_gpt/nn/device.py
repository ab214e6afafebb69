"""Where numpy_gpt's arrays live: NumPy on the CPU, or CuPy on a CUDA GPU.

The layers never name their array library. A function that needs a module-level function
asks its input for the module, CuPy's idiom for code that runs on either device:

    xp = get_array_module(x)        # numpy for a NumPy array, cupy for a CuPy array
    xp.exp(att, out=att)

CuPy copies NumPy's API, so the hand-written forward and backward passes are the same lines
on both devices, and operators and methods (x @ w, x.sum(axis=0), x[idx]) need no xp at all.
Only the edges move data: GPT(..., device="cuda") puts the parameters on the GPU; forward()
moves the token ids and dropout masks there; to_numpy() brings arrays back for checkpoints,
sampling and comparisons. Randomness stays on the host (np.random.Generator), so one seed
gives the same weights and masks on both devices.

CuPy is optional, and imported only when device "cuda" is asked for: pip install
cupy-cuda12x (the wheel matching your CUDA major version).

Ref: CuPy, "How to write CPU/GPU agnostic code" (cupy.get_array_module).
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np

DEVICES = ("cpu", "cuda")


class DeviceError(RuntimeError):
    """The requested device cannot be used here (no CuPy, or no GPU)."""


def array_module(device: str) -> ModuleType:
    """The array module for `device`: numpy for "cpu", cupy for "cuda" (checked usable)."""
    if device == "cpu":
        return np
    if device != "cuda":
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    try:
        import cupy
    except ImportError:
        raise DeviceError("device 'cuda' runs numpy_gpt on CuPy, which is not installed: "
                          "pip install cupy-cuda12x (or use device 'cpu')") from None
    if not cupy.is_available():
        raise DeviceError("device 'cuda': CuPy is installed but finds no usable CUDA GPU "
                          "(cupy.is_available() is False); use device 'cpu'")
    return cupy


def get_array_module(*arrays: Any) -> ModuleType:
    """numpy, or cupy when any argument is a CuPy array (cupy.get_array_module's rule).

    CuPy is consulted only once something has imported it: a CPU run never loads it.
    """
    cupy = sys.modules.get("cupy")
    return np if cupy is None else cupy.get_array_module(*arrays)


def device_of(array: Any) -> str:
    """ "cpu" for a NumPy array, "cuda" for a CuPy array."""
    return "cpu" if get_array_module(array) is np else "cuda"


def to_numpy(array: Any) -> np.ndarray:
    """The values as a NumPy array: copied from the GPU, or `array` itself when on the CPU."""
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(array, cupy.ndarray):
        return cupy.asnumpy(array)
    return np.asarray(array)


def erf(z: Any) -> Any:
    """The error function on z's device: scipy.special.erf, or cupyx.scipy.special.erf."""
    if get_array_module(z) is np:
        try:
            from scipy.special import erf as erf_
        except ImportError:  # pragma: no cover - scipy is in requirements.txt
            raise ImportError("gelu='exact' in float64 needs scipy.special.erf: "
                              "pip install scipy") from None
    else:
        from cupyx.scipy.special import erf as erf_
    return erf_(z)


def synchronize(xp: ModuleType) -> None:
    """Wait for the GPU's queued work (a no-op for NumPy, which is synchronous)."""
    if xp is not np:
        xp.cuda.Device().synchronize()

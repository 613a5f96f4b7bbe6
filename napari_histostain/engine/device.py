"""Where torch runs: `--device auto|cpu|cuda[:N]|mps`, checked up front and resolved at run time.

`check_device` validates the text without importing torch (the CLI parser stays quick);
`resolve_device` turns it into a `torch.device`, refusing a GPU that is not there with a message
that says what to do. `auto` takes a CUDA GPU when torch sees one, else Apple's MPS, else the CPU.
On CUDA the tile encoders run under bf16 autocast (fp16 where bf16 is not supported).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from ..errors import HistostainError

if TYPE_CHECKING:
    import torch

#: What `--device` accepts.
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"
DEFAULT_DEVICE = "auto"
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class DeviceError(HistostainError):
    """The requested torch device is not valid or not available here."""


def check_device(text: str) -> str:
    """`text` normalised (lower case, no spaces) when it names a device kind; else DeviceError."""
    spec = str(text).strip().lower()
    if not _DEVICE.match(spec):
        raise DeviceError(f"device {text!r} is not one of {DEVICE_CHOICES}")
    return spec


def resolve_device(spec: Any = DEFAULT_DEVICE) -> torch.device:
    """The `torch.device` for `spec` (a device string or a torch.device); DeviceError when the
    device is not available (a CUDA GPU asked for on a CPU-only torch, a GPU index too high)."""
    import torch

    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = check_device(spec or DEFAULT_DEVICE)
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {spec}: torch sees no CUDA GPU here (torch {torch.__version__}"
                f"{', a CPU-only build' if torch.version.cuda is None else ''}). Use --device cpu "
                "(or auto), or install a CUDA build of torch on a machine with an NVIDIA GPU."
            )
        index = int(spec.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {spec}: there are {torch.cuda.device_count()} CUDA GPU(s) (cuda:0 to "
                f"cuda:{torch.cuda.device_count() - 1})."
            )
        return torch.device(spec)
    if spec == "mps" and not _mps_available():
        raise DeviceError(
            "device mps: Apple's Metal (MPS) backend is not available here; use cpu or auto."
        )
    return torch.device(spec)


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype for tile encoders on `device`: bf16 on CUDA (fp16 on GPUs without
    bf16), None (float32) on the CPU and on MPS."""
    import torch

    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def is_accelerator(device: torch.device) -> bool:
    """Whether `device` is a GPU (CUDA or MPS)."""
    return device.type in ("cuda", "mps")


def reader_threads_for(device: torch.device, default: int) -> int:
    """Tile reader threads: `default` on the CPU (torch needs the cores); on a GPU as many as
    there are cores, up to 16 (decoding is what limits a GPU run)."""
    if not is_accelerator(device):
        return default
    return max(default, min(16, os.cpu_count() or 1))


def gpu_count(spec: str = DEFAULT_DEVICE) -> int:
    """How many CUDA GPUs `spec` can use here: every visible GPU for auto / cuda, one for cuda:N,
    none for cpu / mps or without CUDA."""
    spec = check_device(spec)
    if spec in ("cpu", "mps"):
        return 0
    import torch

    if not torch.cuda.is_available():
        return 0
    return torch.cuda.device_count() if spec in ("auto", "cuda") else 1


def worker_device(spec: str, slot: int | None, gpus: int | None = None) -> str:
    """The device of the `slot`-th worker process of a machine: with several CUDA GPUs (`gpus`,
    default: those torch sees) and `spec` auto or cuda, worker k takes cuda:(k mod GPUs), so one
    worker per GPU spreads over all of them; otherwise `spec` unchanged."""
    spec = check_device(spec)
    if slot is None or spec not in ("auto", "cuda"):
        return spec
    n = gpu_count(spec) if gpus is None else gpus
    return f"cuda:{slot % n}" if n > 1 else spec

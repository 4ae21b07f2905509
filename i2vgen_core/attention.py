"""Scaled dot-product attention backends: PyTorch SDPA, xformers, and a memory-bounded chunked path."""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "sdpa", "xformers", "chunked")

# xformers kernels fail for batch*heads above 65535; SDPA on some CUDA versions too (ComfyUI caps at 2**15).
_MAX_KERNEL_BATCH = 32768

#: Default bound of the "chunked" backend: no attention-score slice holds more elements than this (256 MiB fp32).
CHUNK_ELEMENTS = 2 ** 26


class Chunked(str):
    """The "chunked" backend with its own bound on the score matrix, e.g.
    ``unet.set_attention_backend(Chunked(2 ** 22))``; equal to the plain name "chunked"."""

    max_elements: int

    def __new__(cls, max_elements: int = CHUNK_ELEMENTS) -> "Chunked":
        if int(max_elements) < 1:
            raise ValueError(f"the chunked backend needs max_elements >= 1, got {max_elements}")
        backend = super().__new__(cls, "chunked")
        backend.max_elements = int(max_elements)
        return backend


def xformers_available() -> bool:
    """True when the xformers package can be imported."""
    return importlib.util.find_spec("xformers") is not None


def resolve_backend(name: str, device: torch.device | str | None = None) -> str:
    """Turn a user choice ("auto", ...) into the backend that will actually run on `device`."""
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "sdpa"
    if name == "xformers":
        dev = torch.device(device) if device is not None else None
        if not xformers_available():
            raise ValueError("attention='xformers' was requested but xformers is not installed; "
                             "install xformers or choose 'sdpa'")
        if dev is not None and dev.type != "cuda":
            raise ValueError(f"attention='xformers' needs a CUDA device, the model is on {dev}; choose 'sdpa'")
    return name


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # q/k/v: [B, H, N, D]
    if q.shape[0] * q.shape[1] <= _MAX_KERNEL_BATCH or q.device.type != "cuda":
        return F.scaled_dot_product_attention(q, k, v)
    step = max(1, _MAX_KERNEL_BATCH // q.shape[1])
    return torch.cat([F.scaled_dot_product_attention(q[i:i + step], k[i:i + step], v[i:i + step])
                      for i in range(0, q.shape[0], step)])


def _xformers(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    import xformers.ops  # noqa: PLC0415 - optional dependency

    # xformers wants [B, N, H, D]
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
    step = max(1, _MAX_KERNEL_BATCH // q.shape[1] - 1)
    outs = [xformers.ops.memory_efficient_attention(qt[i:i + step], kt[i:i + step], vt[i:i + step])
            for i in range(0, qt.shape[0], step)]
    return torch.cat(outs).transpose(1, 2)


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      max_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """Attention computed in slices over batch and queries so no score matrix exceeds `max_elements`."""
    b, h, n, _ = q.shape
    m = k.shape[2]
    out = torch.empty_like(q)
    per_row = h * n * m
    if per_row <= max_elements:  # whole query sets fit: slice over the batch only
        rows = max_elements // per_row
        for i in range(0, b, rows):
            out[i:i + rows] = F.scaled_dot_product_attention(q[i:i + rows], k[i:i + rows], v[i:i + rows])
        return out
    qstep = max(1, max_elements // max(1, h * m))
    for i in range(b):
        for j in range(0, n, qstep):
            out[i:i + 1, :, j:j + qstep] = F.scaled_dot_product_attention(
                q[i:i + 1, :, j:j + qstep], k[i:i + 1], v[i:i + 1])
    return out


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "sdpa") -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v on [B, H, N, D] tensors with the chosen backend (a name or a `Chunked`)."""
    if backend in ("sdpa", "auto"):
        return _sdpa(q, k, v)
    if backend == "xformers":
        return _xformers(q, k, v)
    if backend == "chunked":
        return chunked_attention(q, k, v, getattr(backend, "max_elements", CHUNK_ELEMENTS))
    raise ValueError(f"unknown attention backend {backend!r}; choose one of {', '.join(BACKENDS)}")

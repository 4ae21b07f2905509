"""Scaled dot-product attention backends: PyTorch SDPA, xformers, a memory-bounded chunked path, batched matmul
for short sequences, FlexAttention and SageAttention (optional package)."""

from __future__ import annotations

import functools
import importlib.util

import torch
import torch.nn.functional as F

from ..config import ATTENTION_BACKENDS

BACKENDS = ATTENTION_BACKENDS

# "bmm": sequences up to this length (the 16-frame temporal attention) use batched matmuls, longer ones SDPA
BMM_MAX_SEQUENCE = 64

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
    if name == "sage":
        dev = torch.device(device) if device is not None else None
        if importlib.util.find_spec("sageattention") is None:
            raise ValueError("attention='sage' was requested but the sageattention package is not installed; "
                             "pip install sageattention (needs triton and a CUDA GPU), or choose 'sdpa'")
        if dev is not None and dev.type != "cuda":
            raise ValueError(f"attention='sage' needs a CUDA device, the model is on {dev}; choose 'sdpa'")
    if name == "flex" and importlib.util.find_spec("torch.nn.attention.flex_attention") is None:
        raise ValueError(f"attention='flex' needs torch>=2.5 (FlexAttention), this is torch {torch.__version__}; "
                         "choose 'sdpa'")
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


def bmm_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention as two batched matmuls with an fp32 softmax: for short sequences (SDPA's kernels are poor at the
    temporal layers' 16 frames x 28k batch); longer sequences go to SDPA."""
    if q.shape[-2] > BMM_MAX_SEQUENCE or k.shape[-2] > BMM_MAX_SEQUENCE:
        return _sdpa(q, k, v)
    scores = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    return torch.matmul(scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype), v)


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    import torch._dynamo  # noqa: PLC0415
    from torch.nn.attention.flex_attention import flex_attention  # noqa: PLC0415

    # one compiled kernel per attention shape of the network (~10): above dynamo's default cap of 8
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(flex_attention, dynamic=False)


def _even_step(batch: int, limit: int) -> int:
    """The largest divisor of `batch` not above `limit`: equal chunks, so a compiled kernel sees one shape."""
    return next(d for d in range(min(batch, max(1, limit)), 0, -1) if batch % d == 0)


def _flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    from torch.nn.attention.flex_attention import flex_attention  # noqa: PLC0415

    # FlexAttention is fast only compiled (CUDA); eager (CPU, tests) runs its reference implementation
    fn = _compiled_flex() if q.is_cuda else flex_attention
    step = _even_step(q.shape[0], _MAX_KERNEL_BATCH // q.shape[1])
    return torch.cat([fn(q[i:i + step], k[i:i + step], v[i:i + step]) for i in range(0, q.shape[0], step)])


def _sage(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if q.shape[-2] <= BMM_MAX_SEQUENCE:  # SageAttention's 128-row blocks would be mostly padding: batched matmuls
        return bmm_attention(q, k, v)
    try:
        from sageattention import sageattn  # noqa: PLC0415 - optional dependency
    except ImportError as err:
        raise RuntimeError("attention backend 'sage' needs the sageattention package (pip install sageattention); "
                           "choose 'sdpa' otherwise") from err
    step = max(1, _MAX_KERNEL_BATCH // q.shape[1])
    return torch.cat([sageattn(q[i:i + step], k[i:i + step], v[i:i + step], tensor_layout="HND", is_causal=False)
                      for i in range(0, q.shape[0], step)])


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "sdpa") -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v on [B, H, N, D] tensors with the chosen backend (a name or a `Chunked`)."""
    if backend in ("sdpa", "auto"):
        return _sdpa(q, k, v)
    if backend == "xformers":
        return _xformers(q, k, v)
    if backend == "chunked":
        return chunked_attention(q, k, v, getattr(backend, "max_elements", CHUNK_ELEMENTS))
    if backend == "bmm":
        return bmm_attention(q, k, v)
    if backend == "flex":
        return _flex(q, k, v)
    if backend == "sage":
        return _sage(q, k, v)
    raise ValueError(f"unknown attention backend {backend!r}; choose one of {', '.join(BACKENDS)}")

"""CUDA-graph replay of a whole UNet step (static shapes): one launch per step instead of thousands.

A graph is captured per input signature (shapes, dtypes, non-tensor values) and replayed after copying the new
inputs into its static buffers. Timesteps and fps must be tensors (a Python number would be baked into the graph).
"""

from __future__ import annotations

from typing import Callable

import torch


def _signature(args: tuple, kwargs: dict) -> tuple:
    def one(v):
        if isinstance(v, torch.Tensor):
            return ("T", tuple(v.shape), v.dtype, str(v.device))
        return ("V", v)
    return tuple(one(a) for a in args) + tuple((k, one(v)) for k, v in sorted(kwargs.items()))


class GraphCache:
    """Captured graphs of `fn`, one per input signature, with their static inputs and outputs."""

    def __init__(self, fn: Callable[..., torch.Tensor], warmup: int = 2):
        self.fn = fn
        self.warmup = warmup
        self.graphs: dict[tuple, tuple] = {}

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        """Run `fn(*args, **kwargs)` by replaying its graph (captured on the first call with this signature)."""
        key = _signature(args, kwargs)
        entry = self.graphs.get(key)
        if entry is None:
            entry = self.graphs[key] = self._capture(args, kwargs)
        graph, static_args, static_kwargs, out = entry
        for dst, src in zip(static_args, args):
            if isinstance(dst, torch.Tensor):
                dst.copy_(src)
        for k, src in kwargs.items():
            if isinstance(static_kwargs[k], torch.Tensor):
                static_kwargs[k].copy_(src)
        graph.replay()
        return out.clone()

    def _capture(self, args: tuple, kwargs: dict) -> tuple:
        clone = lambda v: v.clone() if isinstance(v, torch.Tensor) else v  # noqa: E731
        static_args = tuple(clone(a) for a in args)
        static_kwargs = {k: clone(v) for k, v in kwargs.items()}
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up off the default stream (allocator, cuDNN/cuBLAS handles)
            for _ in range(self.warmup):
                self.fn(*static_args, **static_kwargs)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self.fn(*static_args, **static_kwargs)
        return graph, static_args, static_kwargs, out

"""Counting the live tensor bytes of a forward pass (on CPU or on the meta device at full size): the measurement
behind the memory formula in `i2vgen_core.memory`."""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary


class LiveTensorBytes(TorchDispatchMode):
    """Counts bytes of tensor storages created inside the mode that are still alive; `peak` is the maximum.

    Storages are counted once (views share them) and subtracted when the storage object is freed, so on any device
    (meta included) `peak` is the largest sum of live intermediate tensors, independent of any allocator.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen = WeakIdKeyDictionary()

    def _release(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                if storage in self._seen:
                    continue
                nbytes = storage.nbytes()
                self._seen[storage] = nbytes
                self.live += nbytes
                weakref.finalize(storage, self._release, nbytes)
        self.peak = max(self.peak, self.live)
        return out

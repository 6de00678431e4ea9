"""How many replicas fit in one batched model call: measure a call's memory, then fill to a safe fraction.

TorchSim's autobatcher is the model: rather than guess from atom counts, measure. The peak memory
of one force call of ``n`` replicas (the batched graph, the forward pass and what autograd keeps for
the backward one) grows linearly in ``n``, so calls of one and of ``PROBE_REPLICAS`` replicas give
its fixed part and its part per replica (``CallMemory``), and a call may hold as many replicas as
fit in ``SAFE_MEMORY_FRACTION`` of the memory free when the run starts. The remainder is the
margin for what the count leaves out (the caching allocator's rounding, cuBLAS workspaces) and
for neighbour lists that grow as the structure breathes.

On a GPU the peak is the CUDA caching allocator's own statistic. A CPU has no such statistic, so
there ``LiveBytes`` adds up the bytes of every storage a call creates for as long as a tensor of the
call refers to it, and keeps the largest total: the memory an allocator must hand out, without its
rounding (it would count the same on a GPU, slower, since it sees every operation in Python).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

SAFE_MEMORY_FRACTION = 0.8  # of the free device memory, for the model calls of one MD task
PROBE_REPLICAS = 4  # the second measured call; the first has one replica


class LiveBytes(TorchDispatchMode):
    """Within ``with LiveBytes() as count:``, ``count.peak_bytes`` is the largest number of bytes held at
    once by the storages that the operations inside created; ``count.live_bytes`` what they hold now."""

    def __init__(self):
        super().__init__()
        self.live_bytes = self.peak_bytes = 0
        self._storages: dict[tuple, list[int]] = {}  # (device, address) -> [bytes, tensors referring to it]

    def _release(self, key: tuple) -> None:
        entry = self._storages[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.live_bytes -= entry[0]
            del self._storages[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            key = (str(storage.device), storage.data_ptr())
            if key not in self._storages:
                if storage.nbytes() == 0:
                    continue
                self._storages[key] = [storage.nbytes(), 0]
                self.live_bytes += storage.nbytes()
                self.peak_bytes = max(self.peak_bytes, self.live_bytes)
            self._storages[key][1] += 1
            weakref.finalize(tensor, self._release, key)
        return out


@dataclass(frozen=True)
class CallMemory:
    """The peak memory of one model call of ``n`` replicas: ``fixed_bytes + n * bytes_per_replica``."""

    fixed_bytes: float
    bytes_per_replica: float

    @classmethod
    def measure(cls, call: Callable[[int], object], device: torch.device) -> CallMemory:
        """Fit the peaks of ``call(1)`` and ``call(PROBE_REPLICAS)``, a force call of that many replicas on
        ``device``."""
        peaks = [peak_bytes(lambda n_replicas=n_replicas: call(n_replicas), device) for n_replicas in (1, PROBE_REPLICAS)]
        per_replica = max(peaks[1] - peaks[0], 1) / (PROBE_REPLICAS - 1)
        return cls(fixed_bytes=max(peaks[0] - per_replica, 0.0), bytes_per_replica=per_replica)

    def replicas_within(self, budget_bytes: float) -> int:
        """The most replicas whose call fits in ``budget_bytes`` (at least one)."""
        return max(1, math.floor((budget_bytes - self.fixed_bytes) / self.bytes_per_replica))


def peak_bytes(call: Callable[[], object], device: torch.device) -> int:
    """The most memory ``call()`` holds at once on ``device``, beyond what was held before, in bytes."""
    if device.type != "cuda":
        with LiveBytes() as count:
            call()
        return count.peak_bytes
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    call()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def free_memory_bytes(device: torch.device) -> int:
    """The memory a CUDA ``device`` can still hand out: free on the card, plus what torch's caching
    allocator holds but does not use."""
    free_bytes, _ = torch.cuda.mem_get_info(device)
    return free_bytes + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)

"""Peak tensor memory of a call, and the memory a run may use, on CPU and CUDA.

Peak memory is the tensor memory allocated during a call above what was allocated before it: on
CUDA ``torch.cuda.max_memory_allocated``; on CPU the same quantity replayed from ``torch.profiler``'s
allocation records. It counts tensor storage (activations, saved tensors, gradients, optimizer
state), not allocator slack or Python objects.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile


def cpu_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes of CPU tensors alive at once during ``fn``, above those alive before it.

    Replays the allocations and frees that ``torch.profiler`` records (``profile_memory=True``) in
    time order: the analogue of ``torch.cuda.max_memory_allocated``.
    """
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    changes = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    live = peak = 0
    for _, change in changes:
        live += change
        peak = max(peak, live)
    return peak


def peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak tensor bytes ``fn`` allocates on ``device`` above what was allocated before it."""
    if device.type != "cuda":
        return cpu_peak_bytes(fn)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def available_bytes(device: torch.device) -> int:
    """Memory a run can still allocate on ``device``: free device memory on CUDA, available RAM on CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def human_bytes(n: float) -> str:
    """``n`` bytes in GiB, or in MiB below one GiB."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"

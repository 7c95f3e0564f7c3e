"""crowdloop: RLHF human-feedback data collection on crowdsourcing marketplaces."""

import os

__version__ = "0.1.0"

# One BLAS thread unless the operator says otherwise, set before numpy or scipy load their
# OpenBLAS. Its worker threads spin while they wait for work: on the 2 shared cores this
# project runs on, the worker-aware fit of a 86,400-judgment campaign took 14.4 s of CPU
# with the default thread pool and 1.1 s with one thread (scipy's L-BFGS-B calls BLAS on
# vectors of ~20,000 scores, too small to gain from threads). One thread also makes the
# floats independent of the machine's core count (thread count changes summation order).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# pandas keeps string columns in pyarrow buffers. Arrow's default pool here is mimalloc,
# which keeps what a dropped frame freed resident: measured, a frame of 864k rows x 5
# string columns (131 MiB) and two frames derived from it, all dropped, left 270 MiB
# resident (256 MiB after glibc's malloc_trim) until the pool was asked to release it. On
# the system allocator the same frees gave their large buffers back at once (and the rest
# to malloc_trim), and the peak with the derived frames was 46 MiB lower. Set before
# pyarrow chooses its pool (on first use); an operator's choice stands.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

# glibc's mmap threshold, fixed before the first large array is freed (the dynamic one
# rises with it and leaves later arrays of a few MiB resident in the heap): crowdloop/allocator.py.
from crowdloop.allocator import fix_mmap_threshold  # noqa: E402

fix_mmap_threshold()

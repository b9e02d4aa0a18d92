"""Memory allocators for the process, chosen before TensorFlow starts its thread pools.

With glibc's malloc behind TensorFlow's CPU allocator, tf.data's and TensorFlow's threads each free
25 MB batches, 32 MB activations and 49 KB photos in arenas of their own (up to 8 per core), and RSS
climbs to the sum of every arena's high-water mark. So the CLI asks for:

- TensorFlow's BFC allocator on the CPU (`TF_CPU_ALLOCATOR_USE_BFC`): tensors come from a few large
  regions that are reused, as on a GPU; nothing is mapped afresh per tensor, so steps are not slower;
- two malloc arenas for what is still malloc'd (Python, tf.data's small buffers).

Measured (docs/bench/data.md): two epochs of 5,000 of the generated 320-500 px photos at 128 px, the
tiny image_cnn, disk cache: peak RSS 1,389 -> 1,059 MB and CPU 76.1 -> 70.4 s; reading the disk cache of
22,500 photos for two epochs, no model: 1,352 -> 807 MB. A value the user sets for either environment
variable wins. `cnnapp serve` keeps the defaults: its request threads each call the model, and with
two arenas they waited on each other (docs/bench/serve.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8   # glibc's mallopt parameter
ARENAS = 2


def configure_allocators() -> None:
    """Call before TensorFlow is imported and before any thread is started."""
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    if "MALLOC_ARENA_MAX" not in os.environ:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.mallopt(M_ARENA_MAX, ARENAS)
        except (OSError, AttributeError):   # not glibc: nothing to bound
            pass

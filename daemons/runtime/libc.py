"""The C library, loaded once, with the signatures of the functions the runtime calls.

Pure Python cannot issue a futex call, a fence or ask the allocator a block's size; these
few calls go through ctypes, declared here so every caller shares one set-up.
"""

from __future__ import annotations

import ctypes

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.malloc_usable_size.restype = ctypes.c_size_t
libc.malloc_usable_size.argtypes = [ctypes.c_void_p]

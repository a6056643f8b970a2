"""Time-ordered ids (UUID version 7 layout), so an id alone is a stable cursor key."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = -1
_last_rand = 0
_RAND_BITS = 74  # 12 bits after the version, 62 after the variant


def uuid7() -> str:
    """A UUIDv7 that sorts after every earlier one from this process.

    Within one millisecond the random part is incremented instead of redrawn
    (RFC 9562's monotonic counter method), so ids made in the same millisecond
    keep their order too.
    """

    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            rand = _last_rand + 1
            if rand >> _RAND_BITS:  # counter exhausted: borrow the next millisecond
                ms += 1
                rand = int.from_bytes(os.urandom(10), "big") >> 6 >> 1
        else:
            # Top bit left clear so the counter has room before it overflows.
            rand = int.from_bytes(os.urandom(10), "big") >> 6 >> 1
        _last_ms, _last_rand = ms, rand
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= (rand >> 62 & 0xFFF) << 64
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))

"""Document ids of a ``latest`` transform's destination: a MODEL of ``IDGenerator``, not Elasticsearch.

Source: elastic/elasticsearch ``x-pack/plugin/transform/src/main/java/org/elasticsearch/xpack/transform/
transforms/IDGenerator.java`` and ``transforms/latest/Latest.java`` (``convertBucketToDocument`` adds each
``unique_key`` field with its bucket key, nothing else). So the id depends **only on the unique-key
field names and values** (values ordered by field name, ``TreeMap``): two transforms with the same key
write the same ids, whatever their own ids.

The id: every value's bytes (UTF-8 for strings, big-endian for longs/doubles/ints, ``__NULL_VALUE__``
for a missing bucket, ``__EMPTY_VALUE__`` for ""), each followed by ``$``, hashed with MurmurHash3
x64 128 (seed 19); the output is the first byte of the first values (while the buffer holds at most 5
bytes), then h1 and h2 (big-endian), base64url without padding, of ``BytesRefBuilder.bytes()``, which is
the builder's whole backing array: Lucene's ``ArrayUtil.oversize`` growth leaves trailing zero bytes,
which is why real transform ids end in ``AAAA...``. The growth rule is modelled from Lucene's
``ArrayUtil.oversize`` (64-bit JVM, 1-byte elements); that part is written from knowledge of Lucene,
not re-read.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

_M64 = (1 << 64) - 1
_C1, _C2 = 0x87C37B91114253D5, 0x4CF5AD432745937F


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M64


def _fmix(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _M64
    return k ^ (k >> 33)


def murmur3_x64_128(data: bytes, seed: int) -> tuple[int, int]:
    """MurmurHash3_x64_128 (as ``org.elasticsearch.common.hash.MurmurHash3.hash128``): (h1, h2) unsigned."""
    h1 = h2 = seed & _M64
    n = len(data) // 16
    for i in range(n):
        k1, k2 = struct.unpack_from("<QQ", data, i * 16)
        k1 = (_rotl((k1 * _C1) & _M64, 31) * _C2) & _M64
        h1 ^= k1
        h1 = (_rotl(h1, 27) + h2) & _M64
        h1 = (h1 * 5 + 0x52DCE729) & _M64
        k2 = (_rotl((k2 * _C2) & _M64, 33) * _C1) & _M64
        h2 ^= k2
        h2 = (_rotl(h2, 31) + h1) & _M64
        h2 = (h2 * 5 + 0x38495AB5) & _M64
    tail = data[n * 16:]
    k1 = k2 = 0
    for i in range(len(tail) - 1, 7, -1):
        k2 ^= tail[i] << (8 * (i - 8))
    if len(tail) > 8:
        h2 ^= (_rotl((k2 * _C2) & _M64, 33) * _C1) & _M64
    for i in range(min(len(tail), 8) - 1, -1, -1):
        k1 ^= tail[i] << (8 * i)
    if tail:
        h1 ^= (_rotl((k1 * _C1) & _M64, 31) * _C2) & _M64
    h1 ^= len(data)
    h2 ^= len(data)
    h1 = (h1 + h2) & _M64
    h2 = (h2 + h1) & _M64
    h1, h2 = _fmix(h1), _fmix(h2)
    h1 = (h1 + h2) & _M64
    h2 = (h2 + h1) & _M64
    return h1, h2


def _value_bytes(value: Any) -> bytes:
    if value is None:
        return b"__NULL_VALUE__"
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        raise ValueError(f"Value of type [{type(value)}] is not supported")
    if isinstance(value, int):
        return struct.pack(">q", value)  # composite terms keys of long fields are Longs
    if isinstance(value, float):
        return struct.pack(">d", value)
    raise ValueError(f"Value of type [{type(value)}] is not supported")


def _oversize(min_size: int) -> int:
    extra = max(min_size >> 3, 3)
    return (min_size + extra + 7) & 0x7FFFFFF8


class _Builder:
    """``BytesRefBuilder``: a byte array grown with ``ArrayUtil.grow`` and a length."""

    def __init__(self) -> None:
        self.array = bytearray()
        self.length = 0

    def append(self, data: bytes) -> None:
        needed = self.length + len(data)
        if len(self.array) < needed:
            self.array.extend(b"\x00" * (_oversize(needed) - len(self.array)))
        self.array[self.length:needed] = data
        self.length = needed


def transform_doc_id(key: dict[str, Any]) -> str:
    """The destination ``_id`` for one bucket: unique-key field -> bucket key value."""
    if not key:
        raise ValueError("Add at least 1 object before generating the ID")
    buffer, hashed = bytearray(), _Builder()
    for field in sorted(key):
        value = _value_bytes(key[field]) or b"__EMPTY_VALUE__"
        buffer += value + b"$"
        if hashed.length <= 5:
            hashed.append(value[:1])
    h1, h2 = murmur3_x64_128(bytes(buffer), 19)
    hashed.append(struct.pack(">QQ", h1, h2))
    return base64.urlsafe_b64encode(bytes(hashed.array)).decode().rstrip("=")

"""Real damage to a store on disk: bytes flipped, files cut short, an index rewritten (the integrity tests
and the bad-input catalogue use these)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def naive_crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit: the definition, not a table."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def shard_index(blob: bytes, per_shard: int) -> np.ndarray:
    """The (offset, nbytes) uint64 pairs at the end of a shard file (before its crc32c)."""
    return np.frombuffer(blob[-(16 * per_shard + 4) : -4], dtype="<u8").reshape(per_shard, 2)


def write_index(path: Path, index: np.ndarray) -> None:
    """Replace a shard's index by ``index`` with a valid crc32c (a damage the checksum cannot see)."""
    blob = bytearray(path.read_bytes())
    raw = index.astype("<u8").tobytes()
    blob[-(len(raw) + 4) :] = raw + naive_crc32c(raw).to_bytes(4, "little")
    path.write_bytes(bytes(blob))


def flip(path: Path, at: int, count: int = 16) -> Path:
    """Invert ``count`` bytes of ``path`` from offset ``at`` (negative: from the end)."""
    data = bytearray(path.read_bytes())
    start = at % len(data)
    for k in range(start, start + count):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def truncate(path: Path) -> Path:
    """Cut ``path`` to half its size."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def inside_first_chunk(path: Path, per_shard: int) -> int:
    """An offset in the middle of the stored bytes of a shard's first sample."""
    offset, nbytes = (int(v) for v in shard_index(path.read_bytes(), per_shard)[0])
    assert nbytes > 40, nbytes
    return offset + nbytes // 2


def flip_in_first_chunk(path: Path, per_shard: int) -> Path:
    """16 bytes flipped inside the payload of the shard's first sample."""
    return flip(path, inside_first_chunk(path, per_shard))


def delete(path: Path) -> Path:
    """Remove the file ``path``."""
    path.unlink()
    return path

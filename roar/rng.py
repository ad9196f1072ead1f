"""Counter-based randomness and integer hashing: pure functions of their inputs, never of a batch.

A draw is a hash of (stream, seed, draw, image index, element), so a stochastic map or a tie-break
depends only on (seed, image) and not on which other images share its batch or on the batch size.
One 32-bit xorshift-multiply finaliser serves every use; its second multiplier is a parameter
because the tie-break keys (roar.removal) and the counter draws were published with different ones.
"""
from __future__ import annotations

import math
import zlib

import torch

M32 = 0xFFFFFFFF
GOLDEN = 0x9E3779B9
COUNTER_MULTIPLIER = 0x846CA68B      # second multiplier of the counter draws
TIEBREAK_MULTIPLIER = 0x68E31DA5     # second multiplier of the tie-break keys


def _mul32(x, c: int):
    """(x * c) mod 2**32 for 0 <= x < 2**32 without overflowing int64: split c into 16-bit halves."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & M32


def mix32(x, second: int = COUNTER_MULTIPLIER):
    """Bijective 32-bit finaliser (xorshift-multiply rounds) on [0, 2**32); Python ints and int64 tensors
    alike. Every step is a bijection mod 2**32, so distinct inputs give distinct outputs."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, second)
    return x ^ (x >> 16)


def hash32(x: torch.Tensor) -> torch.Tensor:
    """The tie-break hash: mix32 of x + GOLDEN with the tie-break multiplier (int64 in, int64 out)."""
    return mix32((x + GOLDEN) & M32, TIEBREAK_MULTIPLIER)


def _counter_bits(seed: int, index: torch.Tensor, numel: int, stream: str, draw: int) -> torch.Tensor:
    """int64 (B, numel) of 32-bit hashes; row b depends only on (stream, seed, draw, index[b])."""
    key = mix32(zlib.crc32(stream.encode()))
    for part in (seed, draw):
        key = mix32(((key ^ (int(part) & M32)) + GOLDEN) & M32)
    per_image = mix32((((index.long().reshape(-1, 1) & M32) ^ key) + GOLDEN) & M32)
    counter = torch.arange(numel, device=index.device, dtype=torch.int64).reshape(1, -1)
    return mix32((mix32(counter ^ per_image) + per_image) & M32)


def counter_uniform(seed: int, index: torch.Tensor, shape: tuple[int, ...], stream: str,
                    draw: int = 0) -> torch.Tensor:
    """float32 (B, *shape) uniform on the open interval (0, 1), on ``index.device``.

    A pure function of (stream, seed, draw, index[b], element): image b gets the same values whatever
    batch it is in. Different ``stream`` names give independent values for different uses.
    """
    numel = math.prod(shape)
    bits = _counter_bits(seed, index, numel, stream, draw) >> 8   # 24 bits: exact in float32
    u = (bits.to(torch.float32) + 0.5) * (1.0 / (1 << 24))
    return u.reshape(index.numel(), *shape)


def counter_normal(seed: int, index: torch.Tensor, shape: tuple[int, ...], stream: str,
                   draw: int = 0) -> torch.Tensor:
    """float32 (B, *shape) standard normal (Box-Muller over two counter-uniform draws)."""
    u1 = counter_uniform(seed, index, shape, stream, 2 * draw)
    u2 = counter_uniform(seed, index, shape, stream, 2 * draw + 1)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)

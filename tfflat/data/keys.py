"""The one key convention for Boolean functions f : {0,1}ⁿ → {0,1} (SPEC §5.1).

A function is given by its 2ⁿ outputs on :func:`tfflat.data.boolean_inputs` (row k has x_i = bit i
of k). Its value is Σ_k f(x_k)·2^k; packed, that is little-endian 64-bit words (word w, bit j =
f(x_{64w+j})); its key is the hex of the value, most significant digit first, 2ⁿ/4 digits (1 for
n < 2). Everything here is plain numpy, vectorised over rows: the sampler packs and keys millions.
"""

from __future__ import annotations

import numpy as np

_MASK = (1 << 64) - 1


def n_words(bits: int) -> int:
    """64-bit words per function of ``bits`` inputs (2^bits output bits)."""
    return max(1, (2 ** bits) // 64)


def n_digits(bits: int) -> int:
    """Hex digits of the key of a function of ``bits`` inputs."""
    return max(1, 2 ** bits // 4)


def pack(f: np.ndarray) -> np.ndarray:
    """Outputs ``f`` of shape (m, 2ⁿ) in {0, 1} → words (m, n_words) uint64 (bit k = f(x_k))."""
    f = np.asarray(f).astype(bool)
    m, size = f.shape
    padded = np.zeros((m, max(size, 64)), bool)
    padded[:, :size] = f
    return np.packbits(padded, axis=1, bitorder="little").view("<u8").astype(np.uint64)


def unpack(words: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of :func:`pack`: (m, n_words) uint64 → (m, 2ⁿ) uint8 outputs."""
    words = np.ascontiguousarray(np.asarray(words, dtype="<u8")).reshape(len(words), -1)
    return np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")[:, :2 ** bits]


def hex_keys(words: np.ndarray, bits: int) -> list[str]:
    """Hex keys (MSB first, :func:`n_digits` digits) of packed functions."""
    words = np.ascontiguousarray(np.asarray(words, dtype="<u8")).reshape(len(words), -1)
    m, w = words.shape
    digits = n_digits(bits)
    if m == 0:
        return []
    text = words.view(np.uint8)[:, ::-1].tobytes().hex()      # each row: 16·w hex digits, MSB first
    width = 16 * w
    return [text[i * width + width - digits:(i + 1) * width] for i in range(m)]


def parse_keys(keys, bits: int) -> np.ndarray:
    """Hex keys → packed words (m, n_words) uint64 (``ValueError`` if a key is not hex)."""
    w = n_words(bits)
    out = np.zeros((len(keys), w), np.uint64)
    for i, k in enumerate(keys):
        v = int(k, 16)
        for j in range(w):
            out[i, j] = (v >> (64 * j)) & _MASK
    return out


def function_key(f: np.ndarray) -> str:
    """Hex key of one Boolean function given as its 2ⁿ outputs."""
    f = np.asarray(f).ravel()
    bits = int(np.log2(len(f))) if len(f) else -1
    if bits < 0 or 2 ** bits != len(f):
        raise ValueError(f"a Boolean function has 2ⁿ outputs, got {len(f)}")
    return hex_keys(pack(f[None]), bits)[0]


def parse_key(key: str, bits: int) -> np.ndarray:
    """The 2ⁿ outputs (uint8) of the function with hex ``key`` (``ValueError`` if not hex)."""
    return unpack(parse_keys([key], bits), bits)[0]

"""Arrow arrays from Python values, built straight from buffers.

``pa.array()`` imports pandas the first time it converts a Python list (it checks whether the list is a pandas
object), which adds about 40 MB to every run that never uses pandas. These builders skip that check.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from itertools import accumulate, repeat
from operator import is_not

import pyarrow as pa

INT64 = pa.int64()
UTC_MICROS = pa.timestamp("us", tz="UTC")


def strings(values: Sequence[str | None]) -> pa.Array:
    """A string array; None becomes null."""
    mask = validity(values)
    texts: Sequence[str] = values if mask is None else [value or "" for value in values]  # type: ignore[assignment]
    joined = "".join(texts)
    if joined.isascii():  # one byte a character: the lengths without encoding each value
        data, lengths = joined.encode(), list(map(len, texts))
    else:
        encoded = [text.encode() for text in texts]
        data, lengths = b"".join(encoded), list(map(len, encoded))
    offsets = array("i", accumulate(lengths, initial=0))
    return pa.Array.from_buffers(pa.string(), len(values), [mask, pa.py_buffer(offsets), pa.py_buffer(data)])


def repeated(value: str, count: int) -> pa.Array:
    """A string array of one value ``count`` times."""
    encoded = value.encode()
    offsets = array("i", range(0, (count + 1) * len(encoded), len(encoded)) if encoded else [0] * (count + 1))
    return pa.Array.from_buffers(pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(encoded * count)])


def int64s(values: Sequence[int], type: pa.DataType = INT64) -> pa.Array:
    """A non-null array of 64-bit integers, or of another 64-bit type such as ``UTC_MICROS``."""
    return pa.Array.from_buffers(type, len(values), [None, pa.py_buffer(array("q", values))])


def float64s(values: Sequence[float]) -> pa.Array:
    """A non-null array of doubles (NaN and infinities included)."""
    return pa.Array.from_buffers(pa.float64(), len(values), [None, pa.py_buffer(array("d", values))])


def optional_int64s(values: Sequence[int | None], type: pa.DataType = INT64) -> pa.Array:
    """An array of 64-bit integers (or another 64-bit type) where None becomes null."""
    mask = validity(values)
    numbers = [0 if value is None else value for value in values] if mask is not None else values
    return pa.Array.from_buffers(type, len(values), [mask, pa.py_buffer(array("q", numbers))])  # type: ignore[type-var]


def optional_float64s(values: Sequence[float | None]) -> pa.Array:
    """An array of doubles where None becomes null (NaN stays NaN)."""
    mask = validity(values)
    numbers = [0.0 if value is None else value for value in values] if mask is not None else values
    return pa.Array.from_buffers(pa.float64(), len(values), [mask, pa.py_buffer(array("d", numbers))])  # type: ignore[type-var]


def validity(values: Sequence[object]) -> pa.Buffer | None:
    """Arrow's validity bitmap (bit i set when values[i] is not None); None when nothing is null."""
    if None not in values:
        return None
    # "1" or "0" per value, last value first: read as a binary number, bit i is value i (no loop in Python)
    digits = bytes(map(is_not, reversed(values), repeat(None))).translate(BINARY_DIGITS)
    return pa.py_buffer(int(digits, 2).to_bytes((len(values) + 7) // 8, "little"))


BINARY_DIGITS = bytes.maketrans(b"\x00\x01", b"01")

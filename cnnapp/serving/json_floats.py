"""Float outputs printed with TF Serving's digits (tensorflow/serving util/json_tensor.cc, WriteDecimal).

TF Serving writes a DT_FLOAT value as printf `%g` (6 significant digits) when that reads back as
the same float32, else as `%.9g`; NaN and +-Infinity as `NaN`, `Infinity`, `-Infinity`. So a score
is `0.934780419`, not the float64 repr of the float32 (`0.9347804188728333`), and `0.5` stays `0.5`.

`tf_serving_floats(array)` returns them as nested lists for JSON (what the codec calls);
`tf_serving_float32(array)` returns float64 values whose Python repr (what `json.dumps` prints)
has exactly those digits: the float64 nearest to the decimal TF Serving prints. The text is then
TF Serving's character for character for |x| < 1e6; above, Python writes the same number without
an exponent (`2000000.0` for TF Serving's `2e+06`).

The rounding is vectorised and exact: x * 10**k is formed exactly as a sum of two float64 (Dekker's
product), so rounding to 6 or 9 digits is half-to-even on the exact value, as printf rounds; and
n / 10**k with both exact is correctly rounded. Values outside [1e-14, 1e6), where 10**k is no
longer exact, go through printf itself, one at a time. Arrays of a few values take that path too:
its cost is per value, the vectorised one's mostly fixed (~70 us).

>>> tf_serving_float32(np.array([0.9347804188728333, 0.5, 1e-5], np.float32)).tolist()
[0.934780419, 0.5, 1e-05]
"""

from __future__ import annotations

import struct

import numpy as np

_MIN_E, _MAX_E = -14, 5                  # decades handled by the vectorised path: [1e-14, 1e6)
# Exact comparisons: for a float32 value x, x >= fl(10**e) exactly when x >= 10**e (no float32
# lies between a power of ten and its nearest float64, a 53-bit number).
_POW10 = np.array([10.0 ** e for e in range(_MIN_E, _MAX_E + 2)])
_SPLIT = 134217729.0                     # 2**27 + 1: Dekker's split of a float64 into halves
SMALL = 48                               # up to this many values: printf, value by value
_as_float32 = struct.Struct("f").pack    # float64 -> float32 bytes, rounded as a C cast rounds


def _two_product(a: np.ndarray, b: float) -> tuple[np.ndarray, np.ndarray]:
    """hi, lo with hi + lo == a * b exactly (Dekker; no overflow in the range used here)."""
    hi = a * b
    c = _SPLIT * a
    a_hi = c - (c - a)
    a_lo = a - a_hi
    c = _SPLIT * b
    b_hi = c - (c - b)
    b_lo = b - b_hi
    return hi, ((a_hi * b_hi - hi) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


def _round_significant(x: np.ndarray, exponent: np.ndarray, digits: int) -> np.ndarray:
    """Positive x in [1e-14, 1e6) with decimal exponent floor(log10(x)), rounded to `digits`
    significant digits half-to-even on its exact value, as the float64 nearest that decimal."""
    scale = 10.0 ** (digits - 1 - exponent)     # 10**0 .. 10**22: exact float64
    hi, lo = _two_product(x, scale)
    n = np.rint(hi)                             # half-to-even on hi
    r = hi - n                                  # exact; only an exact half needs lo to decide
    n += (r == 0.5) & (lo > 0)
    n -= (r == -0.5) & (lo < 0)
    return n / scale


_unpack_float32 = struct.Struct("f").unpack


def _printf_values(values: list[float]) -> list[float]:
    """printf's choice value by value: `%g` when it reads back as the same float32, else `%.9g`."""
    out = []
    for v in values:
        if v - v != 0.0:            # NaN or an infinity: JSON's spellings of them, as they are
            out.append(v)
            continue
        six = float("%g" % v)
        out.append(six if _unpack_float32(_as_float32(six))[0] == v else float("%.9g" % v))
    return out


def _printf_value(v: float) -> float:
    return _printf_values([v])[0]


def _nest(flat: list, shape: tuple) -> list:
    """A flat list -> nested lists of `shape` (what ndarray.tolist() gives, without the array)."""
    if len(shape) <= 1:
        return flat
    step = len(flat) // shape[0] if shape[0] else 0
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def tf_serving_floats(array: np.ndarray) -> list | float:
    """A float32 array -> nested lists of floats whose reprs are TF Serving's JSON digits: what
    `tf_serving_float32(array).tolist()` gives, without building arrays for a few values."""
    x = np.asarray(array, dtype=np.float32)
    if x.size > SMALL:
        return tf_serving_float32(x).tolist()
    flat = _printf_values(x.ravel().tolist())
    return flat[0] if x.ndim == 0 else _nest(flat, x.shape)


def tf_serving_float32(array: np.ndarray) -> np.ndarray:
    """A float32 array -> float64 array of the same shape whose reprs are TF Serving's JSON digits."""
    x = np.asarray(array, dtype=np.float32).astype(np.float64)
    if x.size <= SMALL:
        return np.array(_printf_values(x.ravel().tolist()), dtype=np.float64).reshape(x.shape)
    flat = x.ravel()
    magnitude = np.abs(flat)
    vectorised = (magnitude >= _POW10[0]) & (magnitude < _POW10[-1])
    at = np.flatnonzero(vectorised)
    v = magnitude[at]
    exponent = np.searchsorted(_POW10, v, side="right") - 1 + _MIN_E
    six = _round_significant(v, exponent, 6)
    # %g when it reads back as the same float32 (via float64: a double rounding could differ
    # from a direct decimal -> float32 read only for a decimal within 2**-54 of a float32 midpoint)
    round_trips = six.astype(np.float32) == v.astype(np.float32)
    out = flat.copy()
    out[at] = np.copysign(np.where(round_trips, six, _round_significant(v, exponent, 9)), flat[at])
    rest = np.flatnonzero(~vectorised & np.isfinite(flat) & (flat != 0))
    for i in rest.tolist():                     # beyond the exact range: printf itself
        out[i] = _printf_value(float(flat[i]))
    return out.reshape(x.shape)

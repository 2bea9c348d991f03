"""The local matching's inner loops, compiled: the census matching's (census_matching.py `match_around`) and
the edge sides' weighted costs (edge_sides.py), in C (matching_kernels.c, built with the package by
setup.py) and called through ctypes, which releases the GIL: the matching's bands run in parallel threads.

NumPy needs one pass over the image per operation (and per candidate, or per support sample), each a
memory round trip; compiled, the work of one pixel stays in registers and cache. Both are bit-identical to
the NumPy code they replace (test/test_local_matching.py and test/test_edge_sides.py keep that code as
the reference):
- `match_rows`: for each pixel and candidate offset around its prior, the window sum of differing census
  bits (each window pixel matched at its own prior + offset), the penalised minimum, its neighbours and
  the parabola's sub-pixel step. NumPy made one pass per operation and candidate (about 3.3 ms per
  candidate at 641x555 on one core) and kept a (2r+1, H, W) volume; here a row's sums for every candidate
  come from running column sums, in cache, and no volume is stored.
- `support_weighted_costs`: for each pixel beside a depth edge, its 25 colour-weighted support samples
  matched at two disparities.

The C code trusts its arguments, so the functions here check every array's type, shape and every index
it will read before calling it: a wrong argument is a ValueError, never a read outside an array.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.util

import numpy as np

_LIBRARY = f"{__package__}._matching_kernels"
_POINTER, _INT64 = ctypes.c_void_p, ctypes.c_int64


@functools.cache
def library() -> ctypes.CDLL:
    """The compiled library (loaded once; a few hundred KiB of memory)."""
    spec = importlib.util.find_spec(_LIBRARY)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"the local matching's compiled loops ({_LIBRARY}, from matching_kernels.c) are not "
                           "built: install the package with `pip install .` or `colcon build` (both need a C "
                           "compiler), or turn the census matching and the edge sides off")
    lib = ctypes.CDLL(spec.origin)
    lib.match_rows.restype = ctypes.c_int
    lib.match_rows.argtypes = [_POINTER] * 4 + [_INT64] + [_POINTER] * 2 + [_INT64] * 5 + [ctypes.c_double] + [_POINTER] * 2
    lib.support_weighted_costs.restype = None
    lib.support_weighted_costs.argtypes = ([_POINTER] * 2 + [_INT64] + [_POINTER] * 4 + [_INT64] * 3
                                           + [ctypes.c_int32, _POINTER])
    return lib


def _checked(name: str, array: np.ndarray, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    """`array` as a C-contiguous array of `dtype` (no copy when it is one), or a ValueError."""
    if array.dtype != dtype or array.shape != shape:
        raise ValueError(f"matching kernels: {name} must be {np.dtype(dtype).name} {shape}, not "
                         f"{array.dtype.name} {array.shape}")
    return np.ascontiguousarray(array)


def _pointer(array: np.ndarray) -> int:
    return int(array.ctypes.data)


def match_rows(left_codes: np.ndarray, right_codes: np.ndarray, match_index: np.ndarray, window_room: np.ndarray,
               unmatchable_columns: int, prior: np.ndarray, centre: np.ndarray, radius: int, half_window: int,
               step_penalty: int, max_cost: float) -> tuple[np.ndarray, np.ndarray]:
    """(disparity, cost) of census_matching.match_around, whose docstring says what they are.

    left_codes (H,W) uint32; right_codes (N,) uint32, flattened and padded so that every
    `match_index - offset` is inside it (the padding repeats its first and last code: np.take's "clip");
    match_index (H,W) int32: the index in right_codes of each pixel's match at offset 0; window_room (H,W)
    float32, unmatchable_columns: where a candidate's window would reach left of the right image; prior and
    centre (H,W) float32: the prior and its rounded value. Window sums are over (2 half_window + 1)^2 pixels
    with cv2.BORDER_REFLECT; penalised cost = sum + step_penalty * |offset|; a match is kept where its sum
    is at most max_cost."""
    height, width = left_codes.shape
    image = (height, width)
    arrays = [_checked("left_codes", left_codes, np.uint32, image),
              _checked("right_codes", right_codes, np.uint32, right_codes.shape[:1]),
              _checked("match_index", match_index, np.int32, image),
              _checked("window_room", window_room, np.float32, image),
              _checked("prior", prior, np.float32, image),
              _checked("centre", centre, np.float32, image)]
    # radius: the candidate's index rides in 7 bits of its key; half_window: window sums stay below 65535.
    if not 0 <= unmatchable_columns <= width or not 1 <= radius <= 63 or not 0 <= half_window <= 20:
        raise ValueError(f"matching kernels: bad arguments (right_codes {right_codes.shape}, unmatchable_columns "
                         f"{unmatchable_columns}, radius {radius}, half_window {half_window})")
    if height and width and (int(match_index.min()) - radius < 0 or int(match_index.max()) + radius >= right_codes.size):
        raise ValueError(f"matching kernels: a match index +-{radius} leaves the {right_codes.size} right codes")
    disparity = np.empty(image, np.float32)
    cost = np.empty(image, np.float32)
    if height and width:
        status = library().match_rows(*map(_pointer, arrays[:4]), unmatchable_columns, *map(_pointer, arrays[4:]),
                                      height, width, radius, half_window, step_penalty, max_cost,
                                      _pointer(disparity), _pointer(cost))
        if status != 0:
            raise MemoryError(f"matching kernels: no memory for {2 * radius + 1} candidates over {width} columns")
    return disparity, cost


def support_weighted_costs(left_at: np.ndarray, right_at: np.ndarray, left: np.ndarray, right: np.ndarray,
                           guide: np.ndarray, weights: np.ndarray, radius: int, stride: int, padded_width: int,
                           max_error: int) -> np.ndarray:
    """(2, n) weighted mean errors of edge_sides.py: for each pixel `left_at[i]` (an index in the padded,
    packed images `left`, `right`, `guide`: (N,) uint32), the capped RGB L1 error of its support samples
    (every `stride`-th pixel within `radius`) matched at `right_at[k, i]` ((2, n) int32), each weighted by
    weights[CIELAB L1 distance to the centre] (`guide`; weights: (766,) float32), summed in the order NumPy
    summed them."""
    count = left_at.shape[0]
    size = left.shape[0]
    arrays = [_checked("left_at", left_at, np.int32, (count,)),
              _checked("right_at", right_at, np.int32, (2, count)),
              _checked("left", left, np.uint32, (size,)),
              _checked("right", right, np.uint32, (size,)),
              _checked("guide", guide, np.uint32, (size,)),
              _checked("weights", weights, np.float32, (3 * 255 + 1,))]
    reach = radius * (padded_width + 1)  # the farthest support sample from its centre, in the flat index
    if radius < 0 or stride < 1 or (count and (min(int(left_at.min()), int(right_at.min())) - reach < 0
                                               or max(int(left_at.max()), int(right_at.max())) + reach >= size)):
        raise ValueError(f"matching kernels: a support window (radius {radius}) leaves the {size} packed pixels")
    costs = np.empty((2, count), np.float32)
    if count:
        library().support_weighted_costs(*map(_pointer, arrays[:2]), count, *map(_pointer, arrays[2:]), radius,
                                         stride, padded_width, max_error, _pointer(costs))
    return costs

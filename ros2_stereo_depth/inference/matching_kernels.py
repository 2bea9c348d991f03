"""The local matching's inner loops, compiled with Numba: the census matching's (census_matching.py
`match_around`) and the edge sides' weighted costs (edge_sides.py).

NumPy needs one pass over the image per operation (and per candidate, or per support sample), each a
memory round trip; compiled, the work of one pixel stays in registers and cache. Both are bit-identical to
the NumPy code they replace (test/test_local_matching.py and test/test_edge_sides.py keep that code as
the reference):
- `match_rows`: for each pixel and candidate offset around its prior, the window sum of differing census
  bits (each window pixel matched at its own prior + offset), the penalised minimum, its neighbours and
  the parabola's sub-pixel step. NumPy made one pass per operation and candidate (gather, xor, popcount,
  box filter, key, minimum: about 3.3 ms per candidate at 641x555 on one core) and kept a (2r+1, H, W)
  volume; here a row's sums for every candidate come from running column sums, in cache, and no volume
  is stored. Level 1 at 641x555 (radius 16 and the two edge seeds): 183 -> 77 ms on 2 threads.
- `support_weighted_costs`: for each pixel beside a depth edge, its 25 colour-weighted support samples
  matched at two disparities.

Compiled when first imported (explicit signatures: a few seconds once, then cached beside this file, or in
Numba's user cache when that is read-only); `nogil`: the matching's bands run in parallel threads.
"""
from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

UNMATCHABLE = 65535  # a window sum that marks a candidate whose window reaches outside the right image
KEY_INDEX_BITS = 128  # the candidate's index rides in the low bits of its key (> 2 * MAX_RADIUS_PX + 1)


@intrinsic
def _popcount(typingctx, value):  # type: ignore[no-untyped-def]
    """LLVM's ctpop: one POPCNT instruction on x86-64 and ARMv8 (Numba has no popcount of its own)."""
    signature = types.uint32(types.uint32)

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return builder.ctpop(args[0])

    return signature, codegen


@njit("int64(int64, int64)", nogil=True, cache=True)
def _reflect(index: int, size: int) -> int:
    """cv2.BORDER_REFLECT (fedcba|abcdefgh|hgfedcb), repeated for windows wider than the image."""
    if size == 1:
        return 0
    while index < 0 or index >= size:
        index = -index - 1 if index < 0 else 2 * size - index - 1
    return index


@njit("void(uint32[:, ::1], uint32[::1], int32[:, ::1], int64, int64, uint8[::1])", nogil=True, cache=True)
def _bits_row(left_codes, right_codes, match_index, row, offset, out):  # type: ignore[no-untyped-def]
    """Differing census bits of each pixel of `row` matched at its prior + offset."""
    left, index = left_codes[row], match_index[row]
    for x in range(out.shape[0]):
        out[x] = _popcount(left[x] ^ right_codes[index[x] - offset])


@njit("Tuple((float32[:, ::1], float32[:, ::1]))(uint32[:, ::1], uint32[::1], int32[:, ::1], float32[:, ::1], "
      "int64, float32[:, ::1], float32[:, ::1], int64, int64, int64, float64)",
      nogil=True, cache=True, error_model="numpy")
def match_rows(left_codes, right_codes, match_index, window_room, unmatchable_columns, prior, centre,
               radius, half_window, step_penalty, max_cost):  # type: ignore[no-untyped-def]
    """(disparity, cost) of census_matching.match_around, whose docstring says what they are.

    left_codes (H,W); right_codes flattened and padded so that every `match_index - offset` is inside it
    (the padding repeats its first and last code: np.take's "clip"); match_index: the index in right_codes
    of each pixel's match at offset 0; window_room, unmatchable_columns: where a candidate's window would
    reach left of the right image; centre: the rounded prior. Window sums are over (2 half_window + 1)^2
    pixels with cv2.BORDER_REFLECT; penalised cost = sum + step_penalty * |offset|; a match is kept where
    its sum is at most max_cost."""
    height, width = left_codes.shape
    candidates = 2 * radius + 1
    side = 2 * half_window + 1
    # Running sums over the window's rows, per candidate and column (reflected columns at both ends), and
    # the bits of the window's rows, each in the slot of its row modulo the window's height.
    column_sums = np.zeros((candidates, width + 2 * half_window), np.int32)
    window_bits = np.empty((side, candidates, width), np.uint8)
    row_costs = np.empty((candidates, width), np.int32)
    best_keys = np.empty(width, np.int32)
    disparity = np.empty((height, width), np.float32)
    cost = np.empty((height, width), np.float32)
    penalty = np.empty(candidates, np.int32)
    for c in range(candidates):
        penalty[c] = step_penalty * abs(c - radius) * KEY_INDEX_BITS + c
    for k in range(side):  # the first output row's window: rows -half..half, reflected
        for c in range(candidates):
            _bits_row(left_codes, right_codes, match_index, _reflect(k - half_window, height), c - radius,
                      window_bits[k, c])
            sums, bits = column_sums[c], window_bits[k, c]
            for x in range(width):
                sums[half_window + x] += bits[x]
    step = np.float32(step_penalty)
    for y in range(height):
        if y > 0:  # the row leaving the window is replaced by the one entering it, in its slot
            slot, entering = (y - 1) % side, _reflect(y + half_window, height)
            for c in range(candidates):
                sums, bits = column_sums[c], window_bits[slot, c]
                for x in range(width):
                    sums[half_window + x] -= bits[x]
                _bits_row(left_codes, right_codes, match_index, entering, c - radius, bits)
                for x in range(width):
                    sums[half_window + x] += bits[x]
        for c in range(candidates):
            sums, costs = column_sums[c], row_costs[c]
            for k in range(half_window):
                sums[k] = sums[half_window + _reflect(k - half_window, width)]
                sums[half_window + width + k] = sums[half_window + _reflect(width + k, width)]
            total = np.int32(0)
            for i in range(side):
                total += sums[i]
            costs[0] = total
            for x in range(1, width):
                total += sums[x + 2 * half_window] - sums[x - 1]
                costs[x] = total
            room = window_room[y]
            for x in range(unmatchable_columns):
                if room[x] < c - radius:
                    costs[x] = UNMATCHABLE
        # The penalised minimum, as one key: candidate by candidate over the row (vectorised).
        best_keys[:] = 2147483647
        for c in range(candidates):
            costs, key_penalty = row_costs[c], penalty[c]
            for x in range(width):
                best_keys[x] = min(best_keys[x], costs[x] * KEY_INDEX_BITS + key_penalty)
        for x in range(width):
            best = best_keys[x] & (KEY_INDEX_BITS - 1)
            neighbour = min(max(best, 1), 2 * radius - 1)
            below_sum, at_sum, above_sum = row_costs[neighbour - 1, x], row_costs[neighbour, x], row_costs[neighbour + 1, x]
            # Trusted: texture (the sums change around the minimum), every neighbour matchable, a good
            # match, strictly inside the search window, and not negative (below).
            keep = (((below_sum != at_sum) | (above_sum != at_sum)) & (below_sum < UNMATCHABLE)
                    & (at_sum < UNMATCHABLE) & (above_sum < UNMATCHABLE) & (at_sum <= max_cost)
                    & (best > 0) & (best < 2 * radius))
            matched = np.float32(0.0)
            if keep:  # the parabola only where the match may be kept (a third of the loop's time)
                below = np.float32(below_sum) + step * np.float32(abs(neighbour - 1 - radius))
                at = np.float32(at_sum) + step * np.float32(abs(neighbour - radius))
                above = np.float32(above_sum) + step * np.float32(abs(neighbour + 1 - radius))
                curvature = below - np.float32(2.0) * at + above
                sub_px = np.float32(0.0)
                if curvature > np.float32(0.0):
                    sub_px = np.float32(0.5) * (below - above) / max(curvature, np.float32(1e-6))
                matched = centre[y, x] + np.float32(best - radius) + min(max(sub_px, np.float32(-0.5)), np.float32(0.5))
                keep = matched >= np.float32(0.0)
            disparity[y, x] = matched if keep else prior[y, x]
            cost[y, x] = np.float32(at_sum) if keep else np.float32(np.inf)
    return disparity, cost


@njit("int64(uint32, uint32)", nogil=True, cache=True)
def _colour_distance(a, b):  # type: ignore[no-untyped-def]
    """L1 distance of two packed pixels' three channels (the bytes 0-2; byte 3 is not a channel)."""
    total = 0
    for shift in (0, 8, 16):
        total += abs(np.int64((a >> np.uint32(shift)) & np.uint32(0xFF)) - np.int64((b >> np.uint32(shift)) & np.uint32(0xFF)))
    return total


@njit("float32[:, ::1](int32[::1], int32[:, ::1], uint32[::1], uint32[::1], uint32[::1], float32[::1], "
      "int64, int64, int64, int64)", nogil=True, cache=True, error_model="numpy")
def support_weighted_costs(left_at, right_at, left, right, guide, weights, radius, stride, padded_width,
                           max_error):  # type: ignore[no-untyped-def]
    """(2, n) weighted mean errors of edge_sides.py: for each pixel `left_at[i]` (an index in the padded,
    packed images), the capped RGB L1 error of its support samples (every `stride`-th pixel within
    `radius`) matched at `right_at[k, i]`, each weighted by weights[CIELAB L1 distance to the centre]
    (`guide`), summed in the order NumPy summed them."""
    count = left_at.shape[0]
    costs = np.empty((2, count), np.float32)
    for i in range(count):
        centre = left_at[i]
        centre_colour = guide[centre]
        total_0, total_1, weight_sum = np.float32(0.0), np.float32(0.0), np.float32(0.0)
        for dy in range(-radius, radius + 1, stride):
            for dx in range(-radius, radius + 1, stride):
                offset = dy * padded_width + dx
                here = centre + offset
                weight = weights[_colour_distance(guide[here], centre_colour)]
                weight_sum += weight
                colour = left[here]
                error_0 = min(_colour_distance(right[right_at[0, i] + offset], colour), max_error)
                error_1 = min(_colour_distance(right[right_at[1, i] + offset], colour), max_error)
                total_0 += weight * np.float32(error_0)
                total_1 += weight * np.float32(error_1)
        costs[0, i] = total_0 / weight_sum
        costs[1, i] = total_1 / weight_sum
    return costs

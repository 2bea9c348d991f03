/* The local matching's inner loops in C: the census matching's (census_matching.py `match_around`) and the
 * edge sides' weighted costs (edge_sides.py). matching_kernels.py loads this library with ctypes (which
 * releases the GIL, so the matching's bands run in parallel threads), checks every array and index it
 * passes, and says what each function computes; test/test_local_matching.py and test/test_edge_sides.py
 * hold them to the NumPy code they replaced, bit for bit.
 *
 * Why C and not NumPy: NumPy makes one pass over the image per operation and candidate, each a memory
 * round trip (about 3.3 ms per candidate at 641x555 on one core) and keeps a (2r+1, H, W) cost volume; here
 * a row's window sums for every candidate come from running column sums, in cache. Why not Numba (used
 * before): LLVM in the node's process cost ~110-145 MiB of memory, and the first start compiled for seconds.
 *
 * Bit-identical floats: build with -ffp-contract=off (no fused multiply-add) and without -ffast-math;
 * every float operation below is single precision in the order the NumPy code did it.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define UNMATCHABLE 65535    /* a window sum that marks a candidate whose window reaches left of the right image */
#define KEY_INDEX_BITS 128   /* the candidate's index rides in the low bits of its key (> 2 * max radius + 1) */
#define SHIPPED_WINDOW_PX 9  /* census_matching.WINDOW_PX: its box sum gets an unrolled copy */

/* x86-64: one copy for AVX2 machines (x86-64-v3: 8 lanes, POPCNT) and one for any x86-64, picked when the
 * library loads; the build stays portable (no -march=native). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define HOT
#endif

/* cv2.BORDER_REFLECT (fedcba|abcdefgh|hgfedcb), repeated for windows wider than the image. */
static inline int64_t reflect(int64_t index, int64_t size) {
    if (size == 1) return 0;
    while (index < 0 || index >= size) index = index < 0 ? -index - 1 : 2 * size - index - 1;
    return index;
}

/* Differing census bits of each pixel of `row` matched at its prior + offset. */
static inline void bits_row(const uint32_t *restrict left_codes, const uint32_t *restrict right_codes,
                            const int32_t *restrict match_index, int64_t width, int64_t row, int64_t offset,
                            uint8_t *restrict out) {
    const uint32_t *restrict left = left_codes + row * width;
    const int32_t *restrict index = match_index + row * width;
    for (int64_t x = 0; x < width; x++) out[x] = (uint8_t)__builtin_popcount(left[x] ^ right_codes[index[x] - offset]);
}

/* costs[x] = sums[x] + ... + sums[x + side - 1]: called with a constant side, the inner loop unrolls and
 * the outer one vectorises (a running sum would be one long dependency chain: 2x slower). */
static inline void box_sum(const int32_t *restrict sums, int32_t *restrict costs, int64_t width, int64_t side) {
    for (int64_t x = 0; x < width; x++) {
        int32_t total = 0;
        for (int64_t i = 0; i < side; i++) total += sums[x + i];
        costs[x] = total;
    }
}

/* See matching_kernels.py `match_rows`. Returns 0, or -1 when out of memory. */
HOT int match_rows(const uint32_t *restrict left_codes, const uint32_t *restrict right_codes,
                   const int32_t *restrict match_index, const float *restrict window_room,
                   int64_t unmatchable_columns, const float *restrict prior, const float *restrict centre,
                   int64_t height, int64_t width, int64_t radius, int64_t half_window, int64_t step_penalty,
                   double max_cost, float *restrict disparity, float *restrict cost) {
    const int64_t candidates = 2 * radius + 1, side = 2 * half_window + 1, padded = width + 2 * half_window;
    /* Running sums over the window's rows, per candidate and column (reflected columns at both ends), and
     * the bits of the window's rows, each in the slot of its row modulo the window's height. */
    int32_t *column_sums = calloc((size_t)(candidates * padded), sizeof(int32_t));
    uint8_t *window_bits = malloc((size_t)(side * candidates * width));
    int32_t *row_costs = malloc((size_t)(candidates * width) * sizeof(int32_t));
    int32_t *best_keys = malloc((size_t)width * sizeof(int32_t));
    int32_t *penalty = malloc((size_t)candidates * sizeof(int32_t));
    int status = 0;
    if (!column_sums || !window_bits || !row_costs || !best_keys || !penalty) {
        status = -1;
        goto done;
    }
    for (int64_t c = 0; c < candidates; c++)
        penalty[c] = (int32_t)(step_penalty * llabs(c - radius) * KEY_INDEX_BITS + c);
    for (int64_t k = 0; k < side; k++) { /* the first output row's window: rows -half..half, reflected */
        for (int64_t c = 0; c < candidates; c++) {
            uint8_t *restrict bits = window_bits + (k * candidates + c) * width;
            int32_t *restrict sums = column_sums + c * padded + half_window;
            bits_row(left_codes, right_codes, match_index, width, reflect(k - half_window, height), c - radius, bits);
            for (int64_t x = 0; x < width; x++) sums[x] += bits[x];
        }
    }
    const float step = (float)step_penalty;
    for (int64_t y = 0; y < height; y++) {
        if (y > 0) { /* the row leaving the window is replaced by the one entering it, in its slot */
            const int64_t slot = (y - 1) % side, entering = reflect(y + half_window, height);
            for (int64_t c = 0; c < candidates; c++) {
                uint8_t *restrict bits = window_bits + (slot * candidates + c) * width;
                int32_t *restrict sums = column_sums + c * padded + half_window;
                for (int64_t x = 0; x < width; x++) sums[x] -= bits[x];
                bits_row(left_codes, right_codes, match_index, width, entering, c - radius, bits);
                for (int64_t x = 0; x < width; x++) sums[x] += bits[x];
            }
        }
        const float *restrict room = window_room + y * width;
        for (int64_t x = 0; x < width; x++) best_keys[x] = INT32_MAX;
        for (int64_t c = 0; c < candidates; c++) {
            int32_t *restrict sums = column_sums + c * padded, *restrict costs = row_costs + c * width;
            for (int64_t k = 0; k < half_window; k++) {
                sums[k] = sums[half_window + reflect(k - half_window, width)];
                sums[half_window + width + k] = sums[half_window + reflect(width + k, width)];
            }
            if (side == SHIPPED_WINDOW_PX)
                box_sum(sums, costs, width, SHIPPED_WINDOW_PX);
            else
                box_sum(sums, costs, width, side);
            for (int64_t x = 0; x < unmatchable_columns; x++)
                if ((double)room[x] < (double)(c - radius)) costs[x] = UNMATCHABLE;
            /* The penalised minimum, as one key (cost, then penalty, then the first candidate). */
            const int32_t key_penalty = penalty[c];
            for (int64_t x = 0; x < width; x++) {
                const int32_t key = costs[x] * KEY_INDEX_BITS + key_penalty;
                best_keys[x] = key < best_keys[x] ? key : best_keys[x];
            }
        }
        for (int64_t x = 0; x < width; x++) {
            const int64_t best = best_keys[x] & (KEY_INDEX_BITS - 1);
            const int64_t neighbour = best < 1 ? 1 : (best > 2 * radius - 1 ? 2 * radius - 1 : best);
            const int32_t below_sum = row_costs[(neighbour - 1) * width + x], at_sum = row_costs[neighbour * width + x],
                          above_sum = row_costs[(neighbour + 1) * width + x];
            /* Trusted: texture (the sums change around the minimum), every neighbour matchable, a good match,
             * strictly inside the search window, and not negative (below). Bitwise, not short-circuit: no
             * branches to mispredict. */
            int keep = ((below_sum != at_sum) | (above_sum != at_sum)) & (below_sum < UNMATCHABLE)
                       & (at_sum < UNMATCHABLE) & (above_sum < UNMATCHABLE) & ((double)at_sum <= max_cost)
                       & (best > 0) & (best < 2 * radius);
            float matched = 0.0f;
            if (keep) { /* the parabola only where the match may be kept */
                const float below = (float)below_sum + step * (float)llabs(neighbour - 1 - radius);
                const float at = (float)at_sum + step * (float)llabs(neighbour - radius);
                const float above = (float)above_sum + step * (float)llabs(neighbour + 1 - radius);
                const float curvature = below - 2.0f * at + above;
                float sub_px = 0.0f;
                if (curvature > 0.0f) sub_px = 0.5f * (below - above) / (curvature > 1e-6f ? curvature : 1e-6f);
                sub_px = sub_px < -0.5f ? -0.5f : (sub_px > 0.5f ? 0.5f : sub_px);
                matched = centre[y * width + x] + (float)(best - radius) + sub_px;
                keep = matched >= 0.0f;
            }
            disparity[y * width + x] = keep ? matched : prior[y * width + x];
            cost[y * width + x] = keep ? (float)at_sum : INFINITY;
        }
    }
done:
    free(column_sums);
    free(window_bits);
    free(row_costs);
    free(best_keys);
    free(penalty);
    return status;
}

/* L1 distance of two packed pixels' three channels (bytes 0-2; byte 3 is not a channel). */
static inline int32_t colour_distance(uint32_t a, uint32_t b) {
    int32_t total = 0;
    for (int shift = 0; shift < 24; shift += 8) total += abs((int32_t)((a >> shift) & 0xFF) - (int32_t)((b >> shift) & 0xFF));
    return total;
}

/* See matching_kernels.py `support_weighted_costs`. right_at and costs are (2, count), row-major. */
HOT void support_weighted_costs(const int32_t *restrict left_at, const int32_t *restrict right_at, int64_t count,
                                const uint32_t *restrict left, const uint32_t *restrict right,
                                const uint32_t *restrict guide, const float *restrict weights, int64_t radius,
                                int64_t stride, int64_t padded_width, int32_t max_error, float *restrict costs) {
    for (int64_t i = 0; i < count; i++) {
        const int64_t centre = left_at[i];
        const uint32_t centre_colour = guide[centre];
        float total_0 = 0.0f, total_1 = 0.0f, weight_sum = 0.0f;
        for (int64_t dy = -radius; dy <= radius; dy += stride) {
            for (int64_t dx = -radius; dx <= radius; dx += stride) {
                const int64_t offset = dy * padded_width + dx, here = centre + offset;
                const float weight = weights[colour_distance(guide[here], centre_colour)];
                weight_sum += weight;
                const uint32_t colour = left[here];
                int32_t error_0 = colour_distance(right[right_at[i] + offset], colour);
                int32_t error_1 = colour_distance(right[right_at[count + i] + offset], colour);
                error_0 = error_0 < max_error ? error_0 : max_error;
                error_1 = error_1 < max_error ? error_1 : max_error;
                total_0 += weight * (float)error_0;
                total_1 += weight * (float)error_1;
            }
        }
        costs[i] = total_0 / weight_sum;
        costs[count + i] = total_1 / weight_sum;
    }
}

/**
 * Packing rules (design §4 "Packer"): how big a telemetry message may be, and how many of the
 * oldest outbox rows go into the next one. Pure: the caller supplies the size of a candidate
 * message, so the same rule serves plain JSON and gzip (whose size is known only by compressing).
 */

/** IoT Hub bills device-to-cloud traffic in 4 KB units, properties included. */
export const BILLING_UNIT_BYTES = 4096;
/** IoT Hub's device-to-cloud cap, properties included. */
export const MAX_MESSAGE_BYTES = 256 * 1024;
/**
 * The largest budget the packer accepts: 60 units (240 KiB) keeps 16 KiB between a full
 * message and the cap for AMQP framing and any property a transport adds.
 */
export const MAX_BUDGET_UNITS = 60;

/** The byte budget for `units` whole billing units; throws a RangeError outside 1..60. */
export function budgetBytes(units: number): number {
  if (!Number.isInteger(units) || units < 1 || units > MAX_BUDGET_UNITS) {
    throw new RangeError(`budget must be 1-${MAX_BUDGET_UNITS} whole 4 KB units, not ${units}`);
  }
  return units * BILLING_UNIT_BYTES;
}

/**
 * How many of the first `count` rows to send: the largest n (1 ≤ n ≤ count) for which
 * `sizeOf(n) <= budget` and `sizeOf(n + 1) > budget` (or n = count), found by a safeguarded
 * secant search from `guess` (default 1): size is close to linear in n, so a few probes land
 * on the edge, and the cost grows with the answer, not with `count`. A first row that alone
 * exceeds the budget still goes alone (n = 1): it must leave the outbox some time, and the cap
 * is checked by the caller.
 *
 * Assumes size grows with n (true for JSON; for gzip it can dip by a byte, so the result is
 * the edge of a fitting run, never a size over budget). Every n probed is below the answer
 * plus the last overshoot; a probe is never repeated (callers may cache, need not).
 */
export function rowsWithinBudget(count: number, budget: number, sizeOf: (n: number) => number, guess = 1): number {
  if (count < 1) return 0;
  // Invariant: sizeOf(lo) <= budget (lo = 0: none known), sizeOf(hi) > budget (hi = count + 1: none known).
  let lo = 0;
  let hi = count + 1;
  let prev: [number, number] | undefined;
  let n = Math.min(count, Math.max(1, Math.round(guess)));
  let width = hi - lo;
  let slowSteps = 0;
  for (;;) {
    const size = sizeOf(n);
    if (size <= budget) lo = n;
    else hi = n;
    if (hi - lo <= 1) break;
    // Secant through the last two probes; with one, through the origin (overestimates the
    // per-row size by the fixed overhead, so it undershoots a little: safe, one more probe).
    const [pn, ps] = prev ?? [0, 0];
    const slope = n !== pn && size !== ps ? (size - ps) / (n - pn) : size / n;
    let next = slope > 0 ? n + (budget - size) / slope : hi === count + 1 ? 2 * n : (lo + hi) / 2;
    prev = [n, size];
    // Land on the fitting side of the edge; once there, check the row after it.
    next = Math.floor(next);
    if (next <= lo) next = lo + 1;
    if (next >= hi) next = hi - 1;
    // Safeguard (non-linear sizes): bisect when two probes in a row did not halve the bracket.
    if (hi - lo > width / 2) slowSteps++;
    else {
      slowSteps = 0;
      width = hi - lo;
    }
    if (slowSteps >= 2 && hi <= count) {
      next = Math.floor((lo + hi) / 2);
      slowSteps = 0;
      width = hi - lo;
    }
    n = next;
  }
  return Math.max(lo, 1);
}

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
 * `sizeOf(n) <= budget`, found by doubling then bisecting, so the cost grows with the answer,
 * not with `count`. A first row that alone exceeds the budget still goes alone (n = 1): it
 * must leave the outbox some time, and the cap is checked by the caller.
 *
 * Assumes size grows with n (true for JSON; for gzip it can dip by a byte, so the result is
 * the edge of a fitting run, never a size over budget).
 */
export function rowsWithinBudget(count: number, budget: number, sizeOf: (n: number) => number): number {
  if (count < 1) return 0;
  if (sizeOf(1) > budget) return 1;
  let fits = 1;
  let over = count + 1;
  for (let n = 2; n <= count; n *= 2) {
    if (sizeOf(n) <= budget) fits = n;
    else {
      over = n;
      break;
    }
  }
  if (over === count + 1 && fits < count) {
    if (sizeOf(count) <= budget) return count;
    over = count;
  }
  while (over - fits > 1) {
    const mid = Math.floor((fits + over) / 2);
    if (sizeOf(mid) <= budget) fits = mid;
    else over = mid;
  }
  return fits;
}

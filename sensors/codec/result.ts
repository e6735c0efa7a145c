/**
 * The outcome every GATT decoder returns: decoders never throw, whatever the bytes, so a driver
 * can count a bad notification and carry on (docs/protocols/gatt.md).
 */

/**
 * - `truncated`: fewer bytes than the flags (or the fixed layout) require.
 * - `inconsistent`: the length does not fit the flags: bytes left over, or an RR-Interval list of
 *   an odd number of bytes.
 * - `reserved`: a field holds a value the specification reserves for future use (an unknown
 *   temperature type, month 13); the Core specification (Vol 1, Part E, §2.4) says a receiver
 *   should reject the structure holding it.
 * - `range`: a value outside the characteristic's allowed range (a battery level of 101 %).
 */
export type DecodeErrorKind = 'truncated' | 'inconsistent' | 'reserved' | 'range';

export interface DecodeError {
  readonly kind: DecodeErrorKind;
  readonly message: string;
}

export type DecodeResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: DecodeError };

export function ok<T>(value: T): DecodeResult<T> {
  return { ok: true, value };
}

export function fail(kind: DecodeErrorKind, message: string): DecodeResult<never> {
  return { ok: false, error: { kind, message } };
}

/** A little-endian view of exactly `bytes` (a Buffer may be a slice of a larger pool). */
export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A payload whose length is fixed by the specification: too short is truncated, too long inconsistent. */
export function checkFixedLength(bytes: Uint8Array, length: number, what: string): DecodeResult<never> | undefined {
  if (bytes.length < length) return fail('truncated', `${what} needs ${length} byte(s), got ${bytes.length}`);
  if (bytes.length > length) return fail('inconsistent', `${what} is ${length} byte(s), got ${bytes.length}`);
  return undefined;
}

/**
 * Gateway pairing codes: short, typed by people from a label, so Crockford base32 (no I, L, O,
 * U; case-insensitive; common misreadings mapped back). Ten symbols carry 50 bits: guessing is
 * hopeless behind a rate limit. Only a salted scrypt hash is stored (in the gateway's twin
 * tags); the clear code exists on the label alone.
 */
import { createHash, randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const SYMBOLS = 10;
/** scrypt cost: ~50 ms on a laptop; verification happens once per pairing attempt. */
const SCRYPT = { N: 16_384, r: 8, p: 1, keylen: 32 } as const;

export interface PairingCodeHash {
  readonly algorithm: 'scrypt';
  readonly N: number;
  readonly r: number;
  readonly p: number;
  /** base64 */
  readonly salt: string;
  /** base64 */
  readonly hash: string;
  /**
   * 16 bits of an unsalted digest of the code: lets the companion find the gateway a typed code
   * belongs to without a scrypt per gateway. It narrows a guess by 16 of the code's 50 bits;
   * the remaining 34 bits, the scrypt check and the companion's rate limit keep guessing hopeless.
   */
  readonly bucket: string;
}

/** The lookup bucket of a code (see PairingCodeHash.bucket); undefined when it cannot be a code. */
export function pairingCodeBucket(typed: string): string | undefined {
  const canonical = normalizePairingCode(typed);
  return canonical === undefined ? undefined : bucketOf(canonical);
}

function bucketOf(canonical: string): string {
  return createHash('sha256').update(`fieldlink-pairing-bucket:${canonical}`).digest('hex').slice(0, 4);
}

/** A new code, formatted for a label: `XXXXX-XXXXX`. */
export function generatePairingCode(): string {
  const bytes = randomBytes(SYMBOLS);
  let out = '';
  // 256 is a multiple of 32: every symbol equally likely.
  for (const b of bytes) out += ALPHABET[b % 32];
  return `${out.slice(0, 5)}-${out.slice(5)}`;
}

/**
 * The canonical form of what someone typed: upper case, separators and spaces dropped, the
 * letters people confuse with digits read as those digits. Undefined when it cannot be a code.
 */
export function normalizePairingCode(typed: string): string | undefined {
  const s = typed
    .toUpperCase()
    .replace(/[\s-]/g, '')
    .replace(/[O]/g, '0')
    .replace(/[IL]/g, '1');
  if (s.length !== SYMBOLS) return undefined;
  for (const ch of s) if (!ALPHABET.includes(ch)) return undefined;
  return s;
}

export function hashPairingCode(code: string): PairingCodeHash {
  const canonical = normalizePairingCode(code);
  if (canonical === undefined) throw new RangeError('not a pairing code');
  const salt = randomBytes(16);
  const hash = scryptSync(canonical, salt, SCRYPT.keylen, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p });
  return {
    algorithm: 'scrypt',
    N: SCRYPT.N,
    r: SCRYPT.r,
    p: SCRYPT.p,
    salt: salt.toString('base64'),
    hash: hash.toString('base64'),
    bucket: bucketOf(canonical),
  };
}

/** Whether `typed` is the code behind `stored`, compared in constant time. */
export function verifyPairingCode(typed: string, stored: PairingCodeHash): boolean {
  const canonical = normalizePairingCode(typed);
  if (canonical === undefined || stored.algorithm !== 'scrypt') return false;
  const expected = Buffer.from(stored.hash, 'base64');
  const actual = scryptSync(canonical, Buffer.from(stored.salt, 'base64'), expected.length, { N: stored.N, r: stored.r, p: stored.p });
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

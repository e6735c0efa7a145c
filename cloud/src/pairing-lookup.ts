/**
 * Which gateway a typed pairing code belongs to (the first step of phone pairing, issue 8).
 * Provisioning stores each gateway's code as a salted scrypt hash in its twin tags
 * (`tags.fieldlink.pairing`, common/pairing-code.ts) with a 16-bit lookup bucket, so only the
 * few gateways in the code's bucket pay a scrypt check, compared in constant time.
 */
import { pairingCodeBucket, verifyPairingCode, type PairingCodeHash } from '../../common/pairing-code.js';
import type { HubTwin } from './fleet-hub.js';

function storedHash(twin: HubTwin): PairingCodeHash | undefined {
  const fieldlink = twin.tags.fieldlink;
  if (typeof fieldlink !== 'object' || fieldlink === null) return undefined;
  const pairing = (fieldlink as { pairing?: unknown }).pairing;
  if (typeof pairing !== 'object' || pairing === null) return undefined;
  const p = pairing as Partial<PairingCodeHash>;
  return p.algorithm === 'scrypt' && typeof p.salt === 'string' && typeof p.hash === 'string' && typeof p.bucket === 'string' ? (p as PairingCodeHash) : undefined;
}

/** The id of the gateway whose pairing code `typed` is, or undefined (malformed, unknown). */
export function gatewayForPairingCode(twins: Iterable<HubTwin>, typed: string): string | undefined {
  const bucket = pairingCodeBucket(typed);
  if (bucket === undefined) return undefined;
  for (const twin of twins) {
    const stored = storedHash(twin);
    if (stored?.bucket === bucket && verifyPairingCode(typed, stored)) return twin.deviceId;
  }
  return undefined;
}

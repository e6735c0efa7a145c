import { createHmac, timingSafeEqual } from 'node:crypto';

/** A SharedAccessSignature token as IoT Hub's SDKs mint it (azure-iot-common authorization.js). */
export interface SasToken {
  /** Resource URI exactly as sent: still URL-encoded, because the signature covers that form. */
  readonly srRaw: string;
  /** Decoded resource URI, e.g. `localhost/devices/dev1`. */
  readonly resource: string;
  readonly sig: string;
  /** Expiry, seconds since the epoch. */
  readonly se: number;
  readonly skn: string | undefined;
}

export class SasParseError extends Error {}

const PREFIX = 'SharedAccessSignature ';

export function parseSasToken(token: string): SasToken {
  if (typeof token !== 'string' || !token.startsWith(PREFIX)) {
    throw new SasParseError('token is not a SharedAccessSignature');
  }
  const fields = new Map<string, string>();
  for (const part of token.slice(PREFIX.length).trim().split('&')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new SasParseError(`malformed token field "${part.slice(0, 20)}"`);
    fields.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const srRaw = fields.get('sr');
  const sigRaw = fields.get('sig');
  const seRaw = fields.get('se');
  if (srRaw === undefined || sigRaw === undefined || seRaw === undefined) {
    throw new SasParseError('token must carry sr, sig and se');
  }
  if (!/^\d+$/.test(seRaw)) throw new SasParseError('token expiry (se) is not a number');
  const sknRaw = fields.get('skn');
  let resource: string;
  let sig: string;
  let skn: string | undefined;
  try {
    resource = decodeURIComponent(srRaw);
    sig = decodeURIComponent(sigRaw);
    skn = sknRaw === undefined ? undefined : decodeURIComponent(sknRaw);
  } catch {
    throw new SasParseError('token sr, sig or skn is not valid URL encoding');
  }
  return { srRaw, resource, sig, se: Number(seRaw), skn };
}

export function computeSignature(keyBase64: string, srRaw: string, se: number): string {
  return createHmac('sha256', Buffer.from(keyBase64, 'base64')).update(`${srRaw}\n${se}`).digest('base64');
}

/** Constant-time check of the token's signature against any of the keys (primary, secondary). */
export function signatureMatches(token: SasToken, keysBase64: readonly string[]): boolean {
  const given = Buffer.from(token.sig, 'base64');
  let ok = false;
  for (const key of keysBase64) {
    if (!key) continue;
    const expected = Buffer.from(computeSignature(key, token.srRaw, token.se), 'base64');
    // Compare every key even after a match so timing does not reveal which key matched.
    if (expected.length === given.length && timingSafeEqual(expected, given)) ok = true;
  }
  return ok;
}

/** Mints a token the way the SDKs do: sr URL-encoded, signature over the encoded sr. */
export function mintSasToken(resource: string, keyBase64: string, keyName: string | undefined, expirySec: number): string {
  const srRaw = encodeURIComponent(resource);
  const sig = encodeURIComponent(computeSignature(keyBase64, srRaw, expirySec));
  return `${PREFIX}sr=${srRaw}&sig=${sig}${keyName ? `&skn=${encodeURIComponent(keyName)}` : ''}&se=${expirySec}`;
}

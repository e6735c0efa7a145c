import t from 'tap';
import { generatePairingCode, hashPairingCode, pairingCodeBucket } from '../../../common/pairing-code.js';
import { gatewayForPairingCode } from '../../../cloud/src/pairing-lookup.js';
import type { HubTwin } from '../../../cloud/src/fleet-hub.js';

function twin(deviceId: string, tags: Record<string, unknown>): HubTwin {
  return { deviceId, etag: 'e', desired: {}, reported: {}, tags, connectionState: undefined, lastActivityTime: undefined, status: 'enabled' };
}

t.test('a typed code finds its gateway through the bucket and the scrypt check; wrong or malformed codes find none', async (t) => {
  const codes = Array.from({ length: 30 }, () => generatePairingCode());
  const twins = codes.map((c, i) => twin(`gw-${i}`, { fieldlink: { kind: 'gateway', pairing: hashPairingCode(c) } }));
  twins.push(twin('gw-unprovisioned', {}), twin('gw-odd', { fieldlink: { pairing: 'not an object' } }));
  for (const [i, c] of codes.entries()) t.equal(gatewayForPairingCode(twins, c.toLowerCase()), `gw-${i}`);
  t.equal(gatewayForPairingCode(twins, 'ABCDE-FGHJK'), undefined, 'a code nobody has');
  t.equal(gatewayForPairingCode(twins, 'nope'), undefined, 'malformed');
});

t.test('a code in the right bucket but not the right code is refused (the bucket only narrows the search)', async (t) => {
  const code = generatePairingCode();
  const stored = hashPairingCode(code);
  // Find another code with the same 16-bit bucket.
  let other: string | undefined;
  for (let i = 0; i < 500_000 && other === undefined; i++) {
    const c = generatePairingCode();
    if (c !== code && pairingCodeBucket(c) === stored.bucket) other = c;
  }
  t.ok(other, 'a colliding code exists');
  t.equal(gatewayForPairingCode([twin('gw-1', { fieldlink: { pairing: stored } })], other ?? ''), undefined);
  t.equal(gatewayForPairingCode([twin('gw-1', { fieldlink: { pairing: stored } })], code), 'gw-1');
});

import t from 'tap';
import { qrSvg } from '../../common/qr-label.js';
import { companionBaseUrl } from '../../common/companion-url.js';
import { labelPayload, labelSvg, type Label } from '../../scripts/provision/label.js';

t.test('the label QR: a pairing-page link with the companion URL, the fieldlink: form without', async (t) => {
  t.equal(labelPayload({ gatewayId: 'gw 1', pairingCode: '7K3QX-M9P2D' }), 'fieldlink:pair?gateway=gw%201&code=7K3QX-M9P2D');
  t.equal(
    labelPayload({ gatewayId: 'gw-1', pairingCode: '7K3QX-M9P2D', companionUrl: 'https://pair.example.com/' }),
    'https://pair.example.com/pair#gateway=gw-1&code=7K3QX-M9P2D',
    'the code rides in the fragment, never sent to a server',
  );
  t.equal(companionBaseUrl('https://example.com/fieldlink/', '--companion-url'), 'https://example.com/fieldlink', 'a path prefix is kept');
  t.throws(() => companionBaseUrl('example.com', '--companion-url'), { code: 'CONFIG_INVALID', message: /not a URL/ });
  t.throws(() => companionBaseUrl('ftp://example.com', '--companion-url'), { code: 'CONFIG_INVALID', message: /https/ });
  t.throws(() => companionBaseUrl('https://example.com/?a=1', '--companion-url'), { code: 'CONFIG_INVALID', message: /no query/ });
  t.equal(companionBaseUrl('https://user:secret@example.com/', '--companion-url'), 'https://example.com', 'credentials never reach a printed label');
  const label: Label = { gatewayId: 'gw<1>', pairingCode: '7K3QX-M9P2D', companionUrl: 'https://pair.example.com' };
  const svg = labelSvg(label);
  t.ok(svg.includes('gw&lt;1&gt;'), 'the id is escaped');
  // qrSvg's drawing is decoded back to its payload in test/sensors/ble/device-label.test.ts.
  t.ok(svg.includes(qrSvg(labelPayload(label), { x: 5, y: 4, side: 50 }, 1)), 'the QR carries the label payload');
});

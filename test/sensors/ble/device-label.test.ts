/**
 * A wearable's pairing label (sensors/ble/device-label.ts): the QR text the phone pairing page
 * reads, its inverse, the SVG and terminal renderings (each decoded back with jsQR), and
 * `fieldlink emulate wearables --labels <dir> --qr`.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jsqr from 'jsqr';
import QRCode from 'qrcode';
import t from 'tap';
import {
  deviceLabelFileName,
  deviceLabelSvg,
  deviceLabelTerminal,
  devicePairingPayload,
  parseDevicePairingPayload,
  writeDeviceLabels,
  type DeviceLabel,
} from '../../../sensors/ble/device-label.js';
import { pairingProfileOf, wearableLabels } from '../../../sensors/ble/emulator/cli.js';
import { eventually } from '../../helpers/deadline.js';
import { CLI } from '../../helpers/gateway-rig.js';

// jsqr is CommonJS with `exports.default`: under NodeNext the default import is the exports object.
const jsQR = jsqr.default;

/** A dark/light module matrix to an RGBA image: ×`scale`, with a `quiet`-module white border; decoded by jsQR. */
function decode(matrix: readonly boolean[][], scale = 4, quiet = 4): string | undefined {
  const n = matrix.length;
  const side = (n + 2 * quiet) * scale;
  const rgba = new Uint8ClampedArray(side * side * 4).fill(255);
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      if (!matrix[y]?.[x]) continue;
      for (let dy = 0; dy < scale; dy++) {
        for (let dx = 0; dx < scale; dx++) {
          const i = (((y + quiet) * scale + dy) * side + (x + quiet) * scale + dx) * 4;
          rgba[i] = rgba[i + 1] = rgba[i + 2] = 0;
        }
      }
    }
  }
  return jsQR(rgba, side, side)?.data;
}

function square(n: number): boolean[][] {
  return Array.from({ length: n }, () => Array<boolean>(n).fill(false));
}

/** The QR inside the SVG label: its viewBox size and the `M x y h w v1 h-w z` runs of its path. */
function svgMatrix(svg: string): boolean[][] {
  const size = Number(/<svg x="[^"]*" y="[^"]*" width="[^"]*" height="[^"]*" viewBox="0 0 (\d+) \1"/.exec(svg)?.[1]);
  const d = /<path fill="#000" d="([^"]*)"/.exec(svg)?.[1] ?? '';
  const m = square(size);
  for (const [, x, y, w] of d.matchAll(/M(\d+) (\d+)h(\d+)v1h-\3z/g)) {
    for (let k = 0; k < Number(w); k++) m[Number(y)]![Number(x) + k] = true;
  }
  return m;
}

/** The terminal QR (qrcode's small renderer): ANSI colours stripped, each character two rows. */
function terminalMatrix(text: string): boolean[][] {
  // eslint-disable-next-line no-control-regex
  const lines = text.replace(/\x1b\[\d+m/g, '').split('\n');
  const qrLines = lines.filter((l) => /^[ ▀▄█]+$/.test(l) && l.length > 10);
  // The renderer pads with one light module each side; first line is rows -1 and 0.
  const size = qrLines[0]!.length - 2;
  const m = square(size);
  qrLines.forEach((line, k) => {
    for (let x = 0; x < size; x++) {
      const c = line[x + 1];
      const top = 2 * k - 1;
      const bottom = 2 * k;
      if (top >= 0 && top < size && (c === '▀' || c === '█')) m[top]![x] = true;
      if (bottom < size && (c === '▄' || c === '█')) m[bottom]![x] = true;
    }
  });
  return m;
}

const BAND: DeviceLabel = { address: 'AA:BB:CC:DD:EE:03', profile: 'heart_rate' };

t.test('payload: the format the pairing page reads, and back', async (t) => {
  t.equal(devicePairingPayload(BAND), 'fieldlink:device?address=AA:BB:CC:DD:EE:03&profile=heart_rate');
  t.equal(
    devicePairingPayload({ address: '01:23:45:67:89:AB', profile: 'environmental_sensing', name: 'Shed & "roof" <2>' }),
    'fieldlink:device?address=01:23:45:67:89:AB&profile=environmental_sensing&name=Shed%20%26%20%22roof%22%20%3C2%3E',
  );
  const labels: DeviceLabel[] = [
    BAND,
    { address: 'FF:FF:FF:FF:FF:FF', profile: 'health_thermometer', name: 'patch 7' },
    { address: '00:11:22:33:44:55', profile: 'environmental_sensing', name: 'Küche ☀ a+b=c?&d#e' },
    { address: '00:11:22:33:44:56', profile: 'heart_rate', name: 'x'.repeat(64) },
  ];
  for (const label of labels) t.same(parseDevicePairingPayload(devicePairingPayload(label)), label, `round trip ${label.address}`);

  // The page's leniency.
  t.same(parseDevicePairingPayload('  FIELDLINK:Device?address=aa:bb:cc:dd:ee:0f&profile=heart_rate\n'), { address: 'AA:BB:CC:DD:EE:0F', profile: 'heart_rate' });
  t.same(parseDevicePairingPayload('aa:bb:cc:dd:ee:01'), { address: 'AA:BB:CC:DD:EE:01', profile: null }, 'bare address, normalised');
  t.same(parseDevicePairingPayload('fieldlink:device?address=AA:BB:CC:DD:EE:01&profile=battery'), { address: 'AA:BB:CC:DD:EE:01', profile: null }, 'unknown profile');
  t.same(parseDevicePairingPayload('fieldlink:device?address=AA:BB:CC:DD:EE:01&profile=heart_rate&name=' + 'y'.repeat(65)), { address: 'AA:BB:CC:DD:EE:01', profile: 'heart_rate' }, 'over-long name dropped');
  for (const bad of ['', 'fieldlink:device?profile=heart_rate', 'fieldlink:device?address=AA:BB:CC:DD:EE&profile=heart_rate', 'AA-BB-CC-DD-EE-01', 'fieldlink:pair?gateway=g&code=ABCD-EFGH', 'GG:BB:CC:DD:EE:01']) {
    t.equal(parseDevicePairingPayload(bad), null, `rejects ${JSON.stringify(bad)}`);
  }
});

t.test('payload: a bad address, profile or name is refused with a specific message', async (t) => {
  for (const address of ['aa:bb:cc:dd:ee:01', 'AA:BB:CC:DD:EE', 'AA-BB-CC-DD-EE-01', 'AA:BB:CC:DD:EE:0G', ' AA:BB:CC:DD:EE:01']) {
    t.throws(() => devicePairingPayload({ address, profile: 'heart_rate' }), { code: 'CONFIG_INVALID', message: `device address must be six upper-case hex pairs separated by colons (AA:BB:CC:DD:EE:FF), not ${JSON.stringify(address)}` }, address);
  }
  t.throws(() => devicePairingPayload({ address: 'AA:BB:CC:DD:EE:01', profile: 'battery' as never }), {
    code: 'CONFIG_INVALID',
    message: 'device profile must be one of heart_rate, health_thermometer, environmental_sensing, not "battery"',
  });
  t.throws(() => devicePairingPayload({ ...BAND, name: 'z'.repeat(65) }), { code: 'CONFIG_INVALID', message: 'device name must be at most 64 characters, not 65' });
  t.throws(() => devicePairingPayload({ ...BAND, name: '  ' }), { code: 'CONFIG_INVALID', message: /must not be empty/ });
  t.throws(() => deviceLabelSvg({ address: 'nope', profile: 'heart_rate' }), { code: 'CONFIG_INVALID' }, 'the SVG checks too');
  await t.rejects(deviceLabelTerminal({ address: 'nope', profile: 'heart_rate' }), { code: 'CONFIG_INVALID' }, 'and the terminal');
});

t.test('QR matrix (qrcode create) decodes back to the payload', async (t) => {
  for (const label of [BAND, { address: 'AA:BB:CC:DD:EE:FF', profile: 'environmental_sensing', name: 'n'.repeat(64) } as const]) {
    const payload = devicePairingPayload(label);
    const { size, data } = QRCode.create(payload, { errorCorrectionLevel: 'M' }).modules;
    const matrix = Array.from({ length: size }, (_, y) => Array.from({ length: size }, (_, x) => data[y * size + x] === 1));
    t.equal(decode(matrix), payload);
  }
});

t.test('SVG label: its QR decodes to the payload; address, model and name shown, XML-escaped', async (t) => {
  const label: DeviceLabel = { address: 'AA:BB:CC:DD:EE:07', profile: 'health_thermometer', name: `<b>Tom & "Jerry"'s</b>` };
  const svg = deviceLabelSvg(label);
  t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="40mm" height="56mm"/);
  t.equal(decode(svgMatrix(svg)), devicePairingPayload(label), 'the drawn QR decodes');
  t.match(svg, '>AA:BB:CC:DD:EE:07</text>');
  t.match(svg, '>Skin-temperature patch</text>');
  t.match(svg, '>&lt;b&gt;Tom &amp; &quot;Jerry&quot;&apos;s&lt;/b&gt;</text>');
  t.notMatch(svg, '<b>', 'no raw markup from the name');
  t.notMatch(svg, 'Tom & ', 'no raw ampersand');
  t.equal((svg.match(/<svg\b/g) ?? []).length, (svg.match(/<\/svg>/g) ?? []).length, 'balanced svg elements');

  const noName = deviceLabelSvg(BAND);
  t.equal(decode(svgMatrix(noName)), devicePairingPayload(BAND));
  t.match(noName, '>Heart-rate wristband</text>');
  t.equal((noName.match(/<text /g) ?? []).length, 3, 'address, model, hint: no name line');
});

t.test('terminal: the QR decodes to the payload, address and model under it', async (t) => {
  const label: DeviceLabel = { address: 'AA:BB:CC:DD:EE:09', profile: 'environmental_sensing', name: 'greenhouse' };
  const text = await deviceLabelTerminal(label);
  t.equal(decode(terminalMatrix(text)), devicePairingPayload(label));
  t.match(text, /\n {2}address {2}AA:BB:CC:DD:EE:09\n {2}model {4}Environment sensor\n {2}name {5}greenhouse\n$/);
  const lines = text.split('\n').length;
  t.ok(lines < 30, `small: ${lines} lines`);
});

t.test('writeDeviceLabels: one SVG per device, named by address with dashes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-device-labels-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'nested', 'labels');
  const labels: DeviceLabel[] = [BAND, { address: 'AA:BB:CC:DD:EE:0A', profile: 'health_thermometer' }];
  t.same(writeDeviceLabels(out, labels), [join(out, 'AA-BB-CC-DD-EE-03.svg'), join(out, 'AA-BB-CC-DD-EE-0A.svg')]);
  t.equal(deviceLabelFileName(BAND), 'AA-BB-CC-DD-EE-03.svg');
  t.equal(readFileSync(join(out, 'AA-BB-CC-DD-EE-0A.svg'), 'utf8'), deviceLabelSvg(labels[1]!));
  t.throws(() => writeDeviceLabels(join(dir, 'bad'), [BAND, { address: 'x', profile: 'heart_rate' }]), { code: 'CONFIG_INVALID' });
  t.same(readdirSync(dir).sort(), ['nested'], 'nothing written when one label is bad');
});

t.test('emulated wearables: profile from --services, addresses as the emulator gives them', async (t) => {
  t.equal(pairingProfileOf(['battery', 'health_thermometer', 'heart_rate']), 'health_thermometer');
  t.equal(pairingProfileOf(['battery']), undefined);
  t.same(wearableLabels(2, ['heart_rate', 'battery']), [
    { address: 'AA:BB:CC:DD:EE:01', profile: 'heart_rate', name: 'wearable 1' },
    { address: 'AA:BB:CC:DD:EE:02', profile: 'heart_rate', name: 'wearable 2' },
  ]);
  t.equal(wearableLabels(256, ['environmental_sensing'])[255]!.address, 'AA:BB:CC:DD:EF:00');
  t.throws(() => wearableLabels(1, ['battery']), { code: 'CONFIG_INVALID', message: /--labels and --qr need a service the pairing page knows/ });
});

function run(args: string[]): { child: ReturnType<typeof spawn>; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, 'emulate', 'wearables', ...args, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (out += c));
  return { child, output: () => out, exited };
}

t.test('fieldlink emulate wearables --labels <dir> --qr: label files and terminal QRs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-wearable-labels-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { child, output, exited } = run(['--count', '2', '--services', 'battery,health_thermometer', '--labels', dir, '--qr']);
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  await eventually(10_000, 'wearables printed', () => /wearables \(adapter hci0\)/.test(output()) || undefined);
  const out = output();
  t.match(out, `pairing labels: 2 written to ${dir}\n`);
  t.match(out, /DBUS_SYSTEM_BUS_ADDRESS=/);
  t.match(out, /wearables \(adapter hci0\): AA:BB:CC:DD:EE:01 AA:BB:CC:DD:EE:02/);
  for (const i of [1, 2]) {
    const label: DeviceLabel = { address: `AA:BB:CC:DD:EE:0${i}`, profile: 'health_thermometer', name: `wearable ${i}` };
    t.match(out, `  address  ${label.address}\n  model    Skin-temperature patch\n  name     wearable ${i}\n`);
    const svg = readFileSync(join(dir, `AA-BB-CC-DD-EE-0${i}.svg`), 'utf8');
    t.equal(decode(svgMatrix(svg)), devicePairingPayload(label), `label ${i} decodes`);
  }
  t.same(readdirSync(dir).sort(), ['AA-BB-CC-DD-EE-01.svg', 'AA-BB-CC-DD-EE-02.svg']);
  const first = out.slice(0, out.indexOf('  address  AA:BB:CC:DD:EE:02'));
  t.equal(decode(terminalMatrix(first)), devicePairingPayload({ address: 'AA:BB:CC:DD:EE:01', profile: 'health_thermometer', name: 'wearable 1' }), 'printed QR decodes');
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'exits 0 on SIGTERM');
});

t.test('fieldlink emulate wearables: without --qr no QR is printed; --labels with only battery is refused', async (t) => {
  const plain = run(['--count', '1']);
  t.teardown(async () => {
    if (plain.child.exitCode === null && plain.child.signalCode === null) plain.child.kill('SIGKILL');
    await plain.exited;
  });
  await eventually(10_000, 'wearables printed', () => /wearables \(adapter hci0\)/.test(plain.output()) || undefined);
  t.notMatch(plain.output(), /address {2}|▀|pairing labels/);
  plain.child.kill('SIGTERM');
  t.equal(await plain.exited, 0);

  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-wearable-labels-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const refused = run(['--services', 'battery', '--labels', join(dir, 'out')]);
  t.not(await refused.exited, 0, 'exits non-zero');
  t.match(refused.output(), /--labels and --qr need a service the pairing page knows in --services \(heart_rate, health_thermometer, environmental_sensing\), not only "battery"/);
  t.same(readdirSync(dir), [], 'no labels written');
});

/**
 * A wearable's pairing label (issue 8): the QR code printed on a BLE wearable that the phone
 * pairing page (cloud/web/pair.js, `deviceFromQr`) scans to add it to a gateway. The text is
 * `fieldlink:device?address=AA:BB:CC:DD:EE:FF&profile=heart_rate[&name=…]`; the page also takes
 * a bare address. Rendered for the terminal and as an SVG to print, in the style of the gateway
 * label (scripts/provision/label.ts), with the QR drawn by common/qr-label.ts.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FieldlinkError } from '../../common/errors.js';
import { qrSvg, qrTerminal } from '../../common/qr-label.js';
import { escapeXml } from '../../common/xml.js';

/** The profiles the pairing page knows, with the model name it shows for each. */
export const PAIRING_PROFILES = {
  heart_rate: 'Heart-rate wristband',
  health_thermometer: 'Skin-temperature patch',
  environmental_sensing: 'Environment sensor',
} as const;

export type PairingProfile = keyof typeof PAIRING_PROFILES;

export interface DeviceLabel {
  /** Upper-case, colon-separated: `AA:BB:CC:DD:EE:FF`. */
  readonly address: string;
  readonly profile: PairingProfile;
  /** At most 64 characters; URL-encoded in the payload. */
  readonly name?: string;
}

/** What a scanned text names: `profile` is null for a bare address or an unknown profile, as on the page. */
export interface ScannedDevice {
  readonly address: string;
  readonly profile: PairingProfile | null;
  readonly name?: string;
}

const DEVICE_ADDRESS = /^[0-9A-F]{2}(:[0-9A-F]{2}){5}$/;
const MAX_DEVICE_NAME = 64;
const PREFIX = 'fieldlink:device?';

export function isPairingProfile(p: unknown): p is PairingProfile {
  return typeof p === 'string' && Object.hasOwn(PAIRING_PROFILES, p);
}

function invalid(message: string): FieldlinkError {
  return new FieldlinkError('CONFIG_INVALID', { message });
}

function checkLabel(label: DeviceLabel): void {
  if (typeof label.address !== 'string' || !DEVICE_ADDRESS.test(label.address)) {
    throw invalid(`device address must be six upper-case hex pairs separated by colons (AA:BB:CC:DD:EE:FF), not ${JSON.stringify(label.address)}`);
  }
  if (!isPairingProfile(label.profile)) {
    throw invalid(`device profile must be one of ${Object.keys(PAIRING_PROFILES).join(', ')}, not ${JSON.stringify(label.profile)}`);
  }
  if (label.name !== undefined) {
    if (typeof label.name !== 'string' || label.name.trim() === '') throw invalid('device name must not be empty (leave it out instead)');
    if (label.name.length > MAX_DEVICE_NAME) throw invalid(`device name must be at most ${MAX_DEVICE_NAME} characters, not ${label.name.length}`);
  }
}

/** The QR text for a wearable: `fieldlink:device?address=…&profile=…[&name=…]`. Throws CONFIG_INVALID on a bad label. */
export function devicePairingPayload(label: DeviceLabel): string {
  checkLabel(label);
  const name = label.name === undefined ? '' : `&name=${encodeURIComponent(label.name)}`;
  return `${PREFIX}address=${label.address}&profile=${label.profile}${name}`;
}

/**
 * The inverse of `devicePairingPayload`, by the page's rules: surrounding blanks ignored, the
 * prefix in any case, the address normalised to upper case, a bare address accepted, an unknown
 * profile read as null. A name is kept when it is 1-64 characters. Null when there is no valid address.
 */
export function parseDevicePairingPayload(text: string): ScannedDevice | null {
  const t = text.trim();
  if (t.slice(0, PREFIX.length).toLowerCase() === PREFIX) {
    const params = new URLSearchParams(t.slice(PREFIX.length));
    const address = (params.get('address') ?? '').trim().toUpperCase();
    if (!DEVICE_ADDRESS.test(address)) return null;
    const profile = params.get('profile');
    const name = params.get('name');
    return {
      address,
      profile: isPairingProfile(profile) ? profile : null,
      ...(name !== null && name.trim() !== '' && name.length <= MAX_DEVICE_NAME ? { name } : {}),
    };
  }
  const bare = t.toUpperCase();
  return DEVICE_ADDRESS.test(bare) ? { address: bare, profile: null } : null;
}

/** The model the pairing page shows for the label's profile. */
function deviceModel(label: DeviceLabel): string {
  return PAIRING_PROFILES[label.profile];
}

/** Text for the terminal: the QR in half-block characters, with the address and model under it. */
export async function deviceLabelTerminal(label: DeviceLabel): Promise<string> {
  const qr = await qrTerminal(devicePairingPayload(label));
  const name = label.name === undefined ? '' : `  name     ${label.name}\n`;
  return `${qr}\n  address  ${label.address}\n  model    ${deviceModel(label)}\n${name}`;
}

/** A printable label (SVG, 40 × 56 mm): QR code, address, model and, if given, the name. */
export function deviceLabelSvg(label: DeviceLabel): string {
  const qr = qrSvg(devicePairingPayload(label), { x: 3, y: 2, side: 34 }, 2);
  return [
    '<svg xmlns="http://www.w3.org/2000/svg" width="40mm" height="56mm" viewBox="0 0 40 56">',
    '<rect width="40" height="56" fill="#fff"/>',
    qr,
    `<text x="20" y="40.5" font-family="monospace" font-size="3.4" font-weight="bold" text-anchor="middle">${escapeXml(label.address)}</text>`,
    `<text x="20" y="45.5" font-family="sans-serif" font-size="3" text-anchor="middle">${escapeXml(deviceModel(label))}</text>`,
    ...(label.name === undefined ? [] : [`<text x="20" y="50" font-family="sans-serif" font-size="2.6" text-anchor="middle">${escapeXml(label.name)}</text>`]),
    '<text x="20" y="54" font-family="sans-serif" font-size="2" text-anchor="middle">scan with the pairing page to add it</text>',
    '</svg>',
    '',
  ].join('\n');
}

/** The label's file name: the address with `-` for `:` (`AA-BB-CC-DD-EE-01.svg`). */
export function deviceLabelFileName(label: Pick<DeviceLabel, 'address'>): string {
  return `${label.address.replaceAll(':', '-')}.svg`;
}

/** Writes one SVG label per device into `dir` (created if missing); returns the paths written. */
export function writeDeviceLabels(dir: string, labels: readonly DeviceLabel[]): string[] {
  const svgs = labels.map((label) => ({ file: join(dir, deviceLabelFileName(label)), svg: deviceLabelSvg(label) }));
  mkdirSync(dir, { recursive: true });
  for (const { file, svg } of svgs) writeFileSync(file, svg);
  return svgs.map((s) => s.file);
}

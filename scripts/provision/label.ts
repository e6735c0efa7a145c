/**
 * The gateway's label: its id, its pairing code and a QR code a phone scans to pair devices
 * with it. With the companion's URL the QR is a link to its pairing page,
 * `https://companion/pair#gateway=…&code=…` (the phone's own camera app opens it; the code rides
 * in the fragment, which browsers never send to a server or put in a Referer); without one it is
 * `fieldlink:pair?gateway=…&code=…`, which the page's in-page scanner reads. Either way the label
 * only proves someone stands at the gateway: pairing also needs a pairing token or link.
 */
import { qrSvg, qrTerminal } from '../../common/qr-label.js';
import { escapeXml } from '../../common/xml.js';
import { companionBaseUrl, pairPageUrl } from '../../common/companion-url.js';

export interface Label {
  readonly gatewayId: string;
  readonly pairingCode: string;
  /** e.g. https://fieldlink.example.com (no trailing /pair). */
  readonly companionUrl?: string;
}

export function labelPayload(label: Label): string {
  const fragment = `gateway=${encodeURIComponent(label.gatewayId)}&code=${label.pairingCode}`;
  return label.companionUrl === undefined ? `fieldlink:pair?${fragment}` : pairPageUrl(companionBaseUrl(label.companionUrl, '--companion-url'), fragment);
}

/** Text for the terminal: the QR in half-block characters, with the id and code under it. */
export async function labelText(label: Label): Promise<string> {
  const qr = await qrTerminal(labelPayload(label));
  return `${qr}\n  gateway       ${label.gatewayId}\n  pairing code  ${label.pairingCode}\n`;
}

/** A printable label (SVG, 60 × 80 mm): QR code, gateway id and pairing code. */
export function labelSvg(label: Label): string {
  return [
    '<svg xmlns="http://www.w3.org/2000/svg" width="60mm" height="80mm" viewBox="0 0 60 80">',
    '<rect width="60" height="80" fill="#fff"/>',
    qrSvg(labelPayload(label), { x: 5, y: 4, side: 50 }, 1),
    `<text x="30" y="62" font-family="monospace" font-size="4" text-anchor="middle">${escapeXml(label.gatewayId)}</text>`,
    `<text x="30" y="71" font-family="monospace" font-size="5.5" font-weight="bold" text-anchor="middle">${escapeXml(label.pairingCode)}</text>`,
    '<text x="30" y="77" font-family="sans-serif" font-size="2.6" text-anchor="middle">pairing code: scan or type it to pair</text>',
    '</svg>',
    '',
  ].join('\n');
}

/**
 * The gateway's label: its id, its pairing code and a QR code a phone scans to pair devices
 * with it (issue 8's pairing page reads `fieldlink:pair?gateway=…&code=…`). For the terminal,
 * and as an SVG to print.
 */
import QRCode from 'qrcode';

export interface Label {
  readonly gatewayId: string;
  readonly pairingCode: string;
}

export function labelPayload(label: Label): string {
  return `fieldlink:pair?gateway=${encodeURIComponent(label.gatewayId)}&code=${label.pairingCode}`;
}

/** Text for the terminal: the QR in half-block characters, with the id and code under it. */
export async function labelText(label: Label): Promise<string> {
  const qr = await QRCode.toString(labelPayload(label), { type: 'terminal', small: true, errorCorrectionLevel: 'M' });
  return `${qr}\n  gateway       ${label.gatewayId}\n  pairing code  ${label.pairingCode}\n`;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c] ?? c);
}

/** A printable label (SVG, 60 × 80 mm): QR code, gateway id and pairing code. */
export async function labelSvg(label: Label): Promise<string> {
  const qr = await QRCode.toString(labelPayload(label), { type: 'svg', errorCorrectionLevel: 'M', margin: 1 });
  const inner = qr.replace(/^<svg[^>]*>/, '').replace(/<\/svg>\s*$/, '');
  const viewBox = /viewBox="([^"]+)"/.exec(qr)?.[1] ?? '0 0 33 33';
  return [
    '<svg xmlns="http://www.w3.org/2000/svg" width="60mm" height="80mm" viewBox="0 0 60 80">',
    '<rect width="60" height="80" fill="#fff"/>',
    `<svg x="5" y="4" width="50" height="50" viewBox="${viewBox}" shape-rendering="crispEdges">${inner}</svg>`,
    `<text x="30" y="62" font-family="monospace" font-size="4" text-anchor="middle">${escapeXml(label.gatewayId)}</text>`,
    `<text x="30" y="71" font-family="monospace" font-size="5.5" font-weight="bold" text-anchor="middle">${escapeXml(label.pairingCode)}</text>`,
    '<text x="30" y="77" font-family="sans-serif" font-size="2.6" text-anchor="middle">pairing code: scan or type it to pair</text>',
    '</svg>',
    '',
  ].join('\n');
}

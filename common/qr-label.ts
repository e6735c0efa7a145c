/**
 * QR codes for pairing labels, the gateway's (scripts/provision/label.ts) and a wearable's
 * (sensors/ble/device-label.ts): one place for the error-correction level the pairing page's
 * scanner is tested against, and for drawing the code into a printable SVG.
 */
import QRCode from 'qrcode';

const QR_OPTIONS = { errorCorrectionLevel: 'M' } as const;


/** The QR in half-block characters, for a terminal. */
export function qrTerminal(payload: string): Promise<string> {
  return QRCode.toString(payload, { type: 'terminal', small: true, ...QR_OPTIONS });
}

/**
 * A nested `<svg>` drawing the QR black on white in the square at (`x`, `y`) of side `side`
 * (the enclosing SVG's units), with `margin` light modules around it. One path: a
 * `M x y h w v1 h-w z` rectangle per run of dark modules in a row.
 */
export function qrSvg(payload: string, at: { readonly x: number; readonly y: number; readonly side: number }, margin: number): string {
  const { size, data } = QRCode.create(payload, QR_OPTIONS).modules;
  let d = '';
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; ) {
      if (!data[y * size + x]) {
        x++;
        continue;
      }
      let run = 1;
      while (x + run < size && data[y * size + x + run]) run++;
      d += `M${x + margin} ${y + margin}h${run}v1h-${run}z`;
      x += run;
    }
  }
  const box = size + 2 * margin;
  return `<svg x="${at.x}" y="${at.y}" width="${at.side}" height="${at.side}" viewBox="0 0 ${box} ${box}" shape-rendering="crispEdges"><rect width="${box}" height="${box}" fill="#fff"/><path fill="#000" d="${d}"/></svg>`;
}

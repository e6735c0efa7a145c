import QRCode from 'qrcode';

/**
 * A YUV4MPEG2 clip for Chromium's fake camera: each text as a QR code,
 * black on white with a quiet zone, shown for `framesEach` frames in turn; Chromium loops it.
 */
export function qrClip(texts: string[], framesEach: number): Buffer {
  const [w, h] = [640, 480];
  const chroma = Buffer.alloc((w / 2) * (h / 2) * 2, 128);
  const parts: Buffer[] = [Buffer.from(`YUV4MPEG2 W${w} H${h} F5:1 Ip A1:1 C420jpeg\n`)];
  for (const text of texts) {
    const { modules } = QRCode.create(text, { errorCorrectionLevel: 'M' });
    const scale = Math.floor((Math.min(w, h) * 0.9) / (modules.size + 8));
    const side = modules.size * scale;
    const [x0, y0] = [Math.floor((w - side) / 2), Math.floor((h - side) / 2)];
    const luma = Buffer.alloc(w * h, 255);
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        if (modules.get(Math.floor(y / scale), Math.floor(x / scale))) luma[(y0 + y) * w + x0 + x] = 0;
      }
    }
    for (let i = 0; i < framesEach; i++) parts.push(Buffer.from('FRAME\n'), luma, chroma);
  }
  return Buffer.concat(parts);
}

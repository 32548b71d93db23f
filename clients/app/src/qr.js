// Draws a ticket as a QR code, as SVG markup (crisp at any size, nothing to load).
import QRCode from 'qrcode';

export async function qrSvg(text) {
  // Error correction M and a quiet zone of 4 modules, as stmgr qr draws them.
  return QRCode.toString(text, { type: 'svg', errorCorrectionLevel: 'M', margin: 4 });
}

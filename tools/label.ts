/**
 * The device label: its address as a QR code, in the terminal and as PNG and SVG files. The QR holds an
 * EIP-681 URI (`ethereum:<address>@<chainId>`) so any wallet scanning it finds the device's account.
 */
import QRCode from 'qrcode';

export interface Label {
  uri: string;
  terminal: string;
  png: string;
  svg: string;
}

export async function renderLabel(address: string, chainId: number, pathNoExt: string): Promise<Label> {
  const uri = `ethereum:${address}@${chainId}`;
  const terminal = await QRCode.toString(uri, { type: 'terminal', small: true, errorCorrectionLevel: 'M' });
  const png = `${pathNoExt}.png`;
  const svg = `${pathNoExt}.svg`;
  await QRCode.toFile(png, uri, { type: 'png', errorCorrectionLevel: 'M', margin: 2, width: 256 });
  await QRCode.toFile(svg, uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
  return { uri, terminal, png, svg };
}

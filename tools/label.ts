/**
 * The device label: its address as a QR code, in the terminal and as PNG and SVG files for a sticker. The QR
 * holds an EIP-681 URI (`ethereum:<address>@<chainId>`) so any wallet scanning it finds the device's account;
 * under the code the files print the address (EIP-55) and the chain id, readable without a scanner.
 * The terminal QR has ANSI colours only on a terminal; piped or redirected it is plain Unicode blocks.
 * The PNG is written here (8-bit grey, zlib from node:zlib; a 5×7 bitmap font for the text) so no image
 * library is needed.
 */
import { writeFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import QRCode from 'qrcode';

export interface Label {
  uri: string;
  terminal: string;
  png: string;
  svg: string;
  /** The text lines under the code. */
  text: string[];
}

/** 5×7 glyphs of what a label prints: hex digits in both cases, `x`, and "chain id". */
const FONT: Record<string, string[]> = {
  '0': ['01110', '10001', '10011', '10101', '11001', '10001', '01110'],
  '1': ['00100', '01100', '00100', '00100', '00100', '00100', '01110'],
  '2': ['01110', '10001', '00001', '00010', '00100', '01000', '11111'],
  '3': ['11111', '00010', '00100', '00010', '00001', '10001', '01110'],
  '4': ['00010', '00110', '01010', '10010', '11111', '00010', '00010'],
  '5': ['11111', '10000', '11110', '00001', '00001', '10001', '01110'],
  '6': ['00110', '01000', '10000', '11110', '10001', '10001', '01110'],
  '7': ['11111', '00001', '00010', '00100', '01000', '01000', '01000'],
  '8': ['01110', '10001', '10001', '01110', '10001', '10001', '01110'],
  '9': ['01110', '10001', '10001', '01111', '00001', '00010', '01100'],
  A: ['01110', '10001', '10001', '11111', '10001', '10001', '10001'],
  B: ['11110', '10001', '10001', '11110', '10001', '10001', '11110'],
  C: ['01110', '10001', '10000', '10000', '10000', '10001', '01110'],
  D: ['11100', '10010', '10001', '10001', '10001', '10010', '11100'],
  E: ['11111', '10000', '10000', '11110', '10000', '10000', '11111'],
  F: ['11111', '10000', '10000', '11110', '10000', '10000', '10000'],
  a: ['00000', '00000', '01110', '00001', '01111', '10001', '01111'],
  b: ['10000', '10000', '10110', '11001', '10001', '10001', '11110'],
  c: ['00000', '00000', '01110', '10000', '10000', '10001', '01110'],
  d: ['00001', '00001', '01101', '10011', '10001', '10001', '01111'],
  e: ['00000', '00000', '01110', '10001', '11111', '10000', '01110'],
  f: ['00110', '01001', '01000', '11100', '01000', '01000', '01000'],
  h: ['10000', '10000', '10110', '11001', '10001', '10001', '10001'],
  i: ['00100', '00000', '01100', '00100', '00100', '00100', '01110'],
  n: ['00000', '00000', '10110', '11001', '10001', '10001', '10001'],
  x: ['00000', '00000', '10001', '01010', '00100', '01010', '10001'],
  ' ': ['00000', '00000', '00000', '00000', '00000', '00000', '00000'],
};
/** Pixels per font dot, and per QR module, in the PNG. */
const DOT = 2;
const MODULE = 10;
const ADVANCE = 6 * DOT;
const LINE = 7 * DOT;
const GAP = 6 * DOT;
const PAD = 16;

/** The text as a bitmap (1 = ink), `DOT` pixels a dot, a column between glyphs. */
export function textBitmap(text: string): { width: number; height: number; ink: Uint8Array } {
  const width = text.length * ADVANCE - DOT;
  const ink = new Uint8Array(width * LINE);
  [...text].forEach((ch, i) => {
    const g = FONT[ch];
    if (!g) throw new Error(`label font has no glyph for ${JSON.stringify(ch)}`);
    for (let r = 0; r < 7; r++) for (let c = 0; c < 5; c++) {
      if (g[r][c] !== '1') continue;
      for (let dy = 0; dy < DOT; dy++) for (let dx = 0; dx < DOT; dx++) ink[(r * DOT + dy) * width + i * ADVANCE + c * DOT + dx] = 1;
    }
  });
  return { width, height: LINE, ink };
}

export interface LabelLayout {
  width: number;
  height: number;
  /** Top-left of the QR (quiet zone included) and its side in pixels. */
  qr: { x: number; y: number; side: number };
  /** Top-left of each text line. */
  lines: { text: string; x: number; y: number }[];
}

export function labelLayout(qrSize: number, text: string[]): LabelLayout {
  const side = (qrSize + 4) * MODULE; // two modules of quiet zone each side
  const textWidth = Math.max(...text.map((t) => t.length * ADVANCE - DOT));
  const width = Math.max(side, textWidth + 2 * PAD);
  let y = side;
  const lines = text.map((t) => {
    const line = { text: t, x: Math.floor((width - (t.length * ADVANCE - DOT)) / 2), y };
    y += LINE + GAP;
    return line;
  });
  return { width, height: y + PAD - GAP, qr: { x: Math.floor((width - side) / 2), y: 0, side }, lines };
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** An 8-bit greyscale PNG of `grey` (width × height, 0 black … 255 white). */
function encodePng(width: number, height: number, grey: Uint8Array): Buffer {
  const raw = Buffer.alloc((width + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (width + 1)] = 0; // filter: none
    raw.set(grey.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', new Uint8Array(0))]);
}

const escapeXml = (s: string) => s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);

export async function renderLabel(address: string, chainId: number, pathNoExt: string, opts: { tty?: boolean } = {}): Promise<Label> {
  const uri = `ethereum:${address}@${chainId}`;
  const text = [address, `chain id ${chainId}`];
  const terminal = opts.tty
    ? await QRCode.toString(uri, { type: 'terminal', small: true, errorCorrectionLevel: 'M' })
    : await QRCode.toString(uri, { type: 'utf8', errorCorrectionLevel: 'M', margin: 2 });
  const qr = QRCode.create(uri, { errorCorrectionLevel: 'M' });
  const n = qr.modules.size;
  const dark = (r: number, c: number) => !!qr.modules.data[r * n + c];
  const L = labelLayout(n, text);

  // PNG.
  const grey = new Uint8Array(L.width * L.height).fill(255);
  for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) {
    if (!dark(r, c)) continue;
    const x0 = L.qr.x + (c + 2) * MODULE;
    const y0 = L.qr.y + (r + 2) * MODULE;
    for (let y = y0; y < y0 + MODULE; y++) grey.fill(0, y * L.width + x0, y * L.width + x0 + MODULE);
  }
  for (const line of L.lines) {
    const b = textBitmap(line.text);
    for (let y = 0; y < b.height; y++) for (let x = 0; x < b.width; x++) if (b.ink[y * b.width + x]) grey[(line.y + y) * L.width + line.x + x] = 0;
  }
  const png = `${pathNoExt}.png`;
  writeFileSync(png, encodePng(L.width, L.height, grey));

  // SVG: the same layout, the text as text (sharp at any print size).
  const cells: string[] = [];
  for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) if (dark(r, c)) cells.push(`M${L.qr.x + (c + 2) * MODULE} ${L.qr.y + (r + 2) * MODULE}h${MODULE}v${MODULE}h-${MODULE}z`);
  const svgText = L.lines.map((l) => `<text x="${L.width / 2}" y="${l.y + LINE}" text-anchor="middle" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="${LINE * 1.2}">${escapeXml(l.text)}</text>`);
  const svg = `${pathNoExt}.svg`;
  writeFileSync(svg, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${L.width}" height="${L.height}" viewBox="0 0 ${L.width} ${L.height}">
<title>${escapeXml(uri)}</title>
<rect width="100%" height="100%" fill="#fff"/>
<path fill="#000" shape-rendering="crispEdges" d="${cells.join('')}"/>
${svgText.join('\n')}
</svg>
`);
  return { uri, terminal, png, svg, text };
}

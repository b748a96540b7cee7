// The sticker label (tools/label.ts): the PNG is decoded here (chunks, CRCs, zlib) and compared pixel by pixel
// with the QR symbol of the EIP-681 URI and with the address and chain id lines; the SVG carries them as text;
// the terminal rendering has ANSI escapes only for a terminal.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import QRCode from 'qrcode';
import { labelLayout, renderLabel, textBitmap } from '../../tools/label.js';

const ADDR = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266';
let dir: string;
beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotkx-label-')); });
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function crc32(b: Buffer): number {
  let c = 0xffffffff;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** An 8-bit greyscale, filter-0 PNG (what label.ts writes), every chunk CRC checked. */
function decodePng(file: string): { width: number; height: number; px: (x: number, y: number) => number } {
  const b = fs.readFileSync(file);
  expect(b.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  let off = 8;
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  for (;;) {
    const len = b.readUInt32BE(off);
    const type = b.toString('latin1', off + 4, off + 8);
    const data = b.subarray(off + 8, off + 8 + len);
    expect(b.readUInt32BE(off + 8 + len)).toBe(crc32(b.subarray(off + 4, off + 8 + len)));
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      expect([data[8], data[9]]).toEqual([8, 0]);
    } else if (type === 'IDAT') idat.push(data);
    off += 12 + len;
    if (type === 'IEND') break;
  }
  const raw = inflateSync(Buffer.concat(idat));
  expect(raw.length).toBe((width + 1) * height);
  for (let y = 0; y < height; y++) expect(raw[y * (width + 1)]).toBe(0);
  return { width, height, px: (x, y) => raw[y * (width + 1) + 1 + x] };
}

test('PNG: the QR symbol of ethereum:<address>@<chainId>, then the EIP-55 address and "chain id N" printed under it', async () => {
  const l = await renderLabel(ADDR, 31337, path.join(dir, 'a'));
  expect(l.text).toEqual([ADDR, 'chain id 31337']);
  const img = decodePng(l.png);
  const qr = QRCode.create(`ethereum:${ADDR}@31337`, { errorCorrectionLevel: 'M' });
  const n = qr.modules.size;
  const L = labelLayout(n, l.text);
  expect([img.width, img.height]).toEqual([L.width, L.height]);
  const cell = L.qr.side / (n + 4);
  // Every module, sampled at its centre.
  let mismatches = 0;
  for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) {
    const dark = img.px(L.qr.x + (c + 2.5) * cell, L.qr.y + (r + 2.5) * cell) === 0;
    if (dark !== !!qr.modules.data[r * n + c]) mismatches++;
  }
  expect(mismatches).toBe(0);
  // The text lines, pixel for pixel, below the code (and nothing but white between and around them).
  expect(L.lines[0].y).toBeGreaterThanOrEqual(L.qr.y + L.qr.side);
  for (const line of L.lines) {
    const t = textBitmap(line.text);
    let wrong = 0;
    for (let y = 0; y < t.height; y++) for (let x = 0; x < t.width; x++) if ((img.px(line.x + x, line.y + y) === 0) !== !!t.ink[y * t.width + x]) wrong++;
    expect({ line: line.text, wrong }).toEqual({ line: line.text, wrong: 0 });
  }
  // A different address gives different ink: the text is the address, not a fixed picture.
  const other = textBitmap('0x70997970C51812dc3A010C7d01b50e0d17dc79C8');
  expect(Buffer.from(other.ink).equals(Buffer.from(textBitmap(ADDR).ink))).toBe(false);
});

test('SVG: the same symbol and the two lines as text; terminal: ANSI only for a terminal', async () => {
  const plain = await renderLabel(ADDR, 5, path.join(dir, 'b'));
  const svg = fs.readFileSync(plain.svg, 'utf8');
  expect(svg).toMatch(/^<\?xml[\s\S]*<svg [\s\S]*<\/svg>\n$/);
  expect(svg).toContain(`>${ADDR}</text>`);
  expect(svg).toContain('>chain id 5</text>');
  expect(svg).toContain(`<title>ethereum:${ADDR}@5</title>`);
  expect(plain.terminal).not.toMatch(/\x1b/);
  expect(plain.terminal).toMatch(/[█▀▄]/);
  const tty = await renderLabel(ADDR, 5, path.join(dir, 'c'), { tty: true });
  expect(tty.terminal).toMatch(/\x1b\[/);
});

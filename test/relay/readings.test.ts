// POST/GET /v1/readings (PROTOCOL.md §9): exact statuses and bodies, dedupe of
// byte-identical envelopes only, the variant bound, cursor order, durability across a
// restart, and the slot-squatting case.
import '../helpers/node-random.js';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeEnvelope } from '../../lib/envelope.js';
import { startRelay, type Relay } from '../../hosts/relay/server.js';
import type { RelayOptions } from '../../hosts/relay/config.js';
import { request } from './helpers.js';

const CONTRACT = '0x5fbdb2315678afecb367f032d93f642f64180aa3';
const tmp = mkdtempSync(join(tmpdir(), 'relay-readings-'));
let n = 0;
const newDb = () => join(tmp, `${n++}.db`);
const open: Relay[] = [];
async function relayAt(dbPath: string, over: Partial<RelayOptions> = {}): Promise<Relay> {
  // The upstream is not needed for readings with the channel check off (it is on by default: test/relay/retention.test.ts).
  const r = await startRelay({ upstreamUrl: 'http://127.0.0.1:9', chainId: 31337, contract: CONTRACT, dbPath, logLevel: 'silent', requireChannel: false, ...over });
  open.push(r);
  return r;
}
afterAll(async () => {
  for (const r of open) await r.stop();
});

// Hand-assembled deterministic CBOR per §7 (independent of lib/cbor): head(major, value) in its shortest form.
function head(major: number, v: bigint): number[] {
  const m = major << 5;
  if (v < 24n) return [m | Number(v)];
  for (const [ai, bytes] of [[24, 1], [25, 2], [26, 4], [27, 8]] as const) {
    if (v < 1n << BigInt(8 * bytes)) {
      const out = [m | ai];
      for (let i = bytes - 1; i >= 0; i--) out.push(Number((v >> BigInt(8 * i)) & 0xffn));
      return out;
    }
  }
  throw new Error('too big');
}
const bstr = (b: Uint8Array) => [...head(2, BigInt(b.length)), ...b];
interface Parts { version?: number[]; device?: Uint8Array; epoch?: bigint; seq?: bigint; nonce?: Uint8Array; ct?: Uint8Array; epochBytes?: number[] }
function envelope(p: Parts = {}): Uint8Array {
  const device = p.device ?? DEVICE;
  return Uint8Array.from([
    0x86,
    ...(p.version ?? [0x01]),
    ...bstr(device),
    ...(p.epochBytes ?? head(0, p.epoch ?? 1n)),
    ...head(0, p.seq ?? 1n),
    ...bstr(p.nonce ?? new Uint8Array(24).fill(7)),
    ...bstr(p.ct ?? new Uint8Array(32).fill(9)),
  ]);
}
const DEVICE = Uint8Array.from(randomBytes(20));
const hex = (b: Uint8Array) => `0x${Buffer.from(b).toString('hex')}`;
const post = (relay: Relay, body: Uint8Array | string, ct = 'application/cbor') =>
  request(`${relay.url}/v1/readings`, 'POST', body, ct ? { 'content-type': ct } : {});
async function all(relay: Relay): Promise<string[]> {
  const r = await request(`${relay.url}/v1/readings?limit=1000`, 'GET');
  return r.json.envelopes;
}

test('hand-assembled envelopes equal lib/envelope encodeEnvelope (so both build the §7 bytes)', () => {
  const nonce = Uint8Array.from(randomBytes(24));
  const ct = Uint8Array.from(randomBytes(40));
  for (const [epoch, seq] of [[1n, 1n], [23n, 24n], [255n, 256n], [65536n, 2n ** 32n], [2n ** 64n - 1n, 2n ** 64n - 1n]]) {
    expect(hex(envelope({ epoch, seq, nonce, ct }))).toBe(hex(encodeEnvelope({ device: DEVICE, epoch, seq, nonce, ciphertext: ct })));
  }
});

describe('POST /v1/readings', () => {
  let relay: Relay;
  beforeAll(async () => {
    relay = await relayAt(newDb());
  });

  test('202 with device lowercase and uint64 decimal strings; byte-identical again → 200 duplicate', async () => {
    const e = envelope({ epoch: 2n ** 64n - 1n, seq: 2n ** 53n + 1n });
    const a = await post(relay, e);
    expect(a.status).toBe(202);
    expect(a.json).toEqual({ stored: true, device: hex(DEVICE), epoch: '18446744073709551615', seq: '9007199254740993' });
    const b = await post(relay, e);
    expect(b.status).toBe(200);
    expect(b.json).toEqual({ stored: false, duplicate: true });
    expect(await all(relay)).toEqual([hex(e)]);
  });

  test('content types: application/cbor with parameters or in upper case is accepted; others 415', async () => {
    expect((await post(relay, envelope({ seq: 100n }), 'Application/CBOR; foo=bar')).status).toBe(202);
    for (const ct of ['application/json', 'application/cbor-seq', 'text/plain', '']) {
      const r = await post(relay, envelope({ seq: 101n }), ct);
      expect(r.status).toBe(415);
      expect(r.json).toEqual({ error: 'unsupported-media-type', message: expect.any(String) });
    }
  });

  test('over 4 KiB → 413 (declared or not); exactly 4096 bytes is accepted', async () => {
    const base = envelope({ seq: 200n, ct: new Uint8Array(0) }).length; // header bytes without the ciphertext payload
    // ciphertext length L ≥ 256 takes a 3-byte head: total = base - 1 + 3 + L
    const fit = envelope({ seq: 200n, ct: new Uint8Array(4096 - (base + 2)).fill(1) });
    expect(fit.length).toBe(4096);
    expect((await post(relay, fit)).status).toBe(202);
    const over = envelope({ seq: 201n, ct: new Uint8Array(4096 - (base + 2) + 1).fill(1) });
    expect(over.length).toBe(4097);
    const r = await post(relay, over);
    expect(r.status).toBe(413);
    expect(r.json).toEqual({ error: 'too-large', message: expect.any(String) });
    expect((await post(relay, Buffer.alloc(1024 * 1024))).status).toBe(413);
  });

  const malformed: Array<[string, () => Uint8Array]> = [
    ['epoch 0', () => envelope({ epoch: 0n })],
    ['seq 0', () => envelope({ seq: 0n })],
    ['version 2', () => envelope({ version: [0x02] })],
    ['version as text', () => envelope({ version: [0x61, 0x31] })],
    ['non-minimal epoch (1 in two bytes)', () => envelope({ epochBytes: [0x18, 0x01] })],
    ['epoch as a bignum tag (2^64)', () => envelope({ epochBytes: [0xc2, 0x49, 1, 0, 0, 0, 0, 0, 0, 0, 0] })],
    ['negative epoch', () => envelope({ epochBytes: [0x20] })],
    ['indefinite-length array', () => { const e = envelope(); return Uint8Array.from([0x9f, ...e.subarray(1), 0xff]); }],
    ['trailing byte', () => Uint8Array.from([...envelope(), 0x00])],
    ['5 items', () => { const e = envelope(); e[0] = 0x85; return e.subarray(0, e.length - 34); }],
    ['device of 19 bytes', () => envelope({ device: new Uint8Array(19) })],
    ['nonce of 23 bytes', () => envelope({ nonce: new Uint8Array(23) })],
    ['ciphertext shorter than its tag', () => envelope({ ct: new Uint8Array(15) })],
    ['truncated', () => envelope().subarray(0, 30)],
    ['empty body', () => new Uint8Array(0)],
    ['a map', () => Uint8Array.from([0xa1, 0x01, 0x02])],
    ['JSON bytes', () => new TextEncoder().encode('[1,2,3]')],
  ];
  test.each(malformed)('%s → 400 bad-envelope, nothing stored', async (_name, make) => {
    const before = await all(relay);
    const r = await post(relay, make());
    expect(r.status).toBe(400);
    expect(r.json).toEqual({ error: 'bad-envelope', message: expect.any(String) });
    expect(await all(relay)).toEqual(before);
  });

  test('up to 4 different bodies per (device, epoch, seq) are stored; the 5th → 409; a copy of a stored one is still 200 duplicate', async () => {
    const bodies = Array.from({ length: 5 }, (_, i) => envelope({ epoch: 3n, seq: 7n, ct: new Uint8Array(32).fill(i) }));
    for (const b of bodies.slice(0, 4)) expect((await post(relay, b)).status).toBe(202);
    const fifth = await post(relay, bodies[4]);
    expect(fifth.status).toBe(409);
    expect(fifth.json).toEqual({ error: 'too-many-variants', message: expect.any(String) });
    expect((await post(relay, bodies[2])).json).toEqual({ stored: false, duplicate: true });
    // Another seq, epoch or device is another slot.
    expect((await post(relay, envelope({ epoch: 3n, seq: 8n, ct: new Uint8Array(32).fill(4) }))).status).toBe(202);
    expect((await post(relay, envelope({ epoch: 4n, seq: 7n, ct: new Uint8Array(32).fill(4) }))).status).toBe(202);
    expect((await post(relay, envelope({ device: new Uint8Array(20).fill(1), epoch: 3n, seq: 7n, ct: new Uint8Array(32).fill(4) }))).status).toBe(202);
  });
});

test('slot squatting: junk posted first for a device\'s next seqs does not turn the genuine envelopes into "duplicate"', async () => {
  const relay = await relayAt(newDb());
  const genuine = [1n, 2n, 3n].map((seq) => envelope({ epoch: 5n, seq, nonce: Uint8Array.from(randomBytes(24)), ct: Uint8Array.from(randomBytes(48)) }));
  for (const seq of [1n, 2n, 3n]) {
    for (let j = 0; j < 3; j++) {
      // Same device, epoch, seq, even the same nonce as the genuine one would have: only the ciphertext differs.
      const junk = envelope({ epoch: 5n, seq, nonce: new Uint8Array(24), ct: Uint8Array.from(randomBytes(48)) });
      expect((await post(relay, junk)).status).toBe(202);
    }
  }
  for (const g of genuine) {
    const r = await post(relay, g);
    expect(r.status).toBe(202);
    expect(r.json.stored).toBe(true);
  }
  const held = await all(relay);
  for (const g of genuine) expect(held).toContain(hex(g));
});

describe('GET /v1/readings', () => {
  let relay: Relay;
  const posted: string[] = [];
  beforeAll(async () => {
    relay = await relayAt(newDb());
    // Interleave devices and out-of-order seqs: the answer follows arrival order, not (device, seq).
    for (let i = 0; i < 25; i++) {
      const e = envelope({ device: new Uint8Array(20).fill(i % 3), seq: BigInt(100 - i), ct: Uint8Array.from(randomBytes(20)) });
      expect((await post(relay, e)).status).toBe(202);
      posted.push(hex(e));
    }
  });

  test('pages follow the stored order; next resumes; the end answers no envelopes and the same cursor', async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    for (;;) {
      const r = await request(`${relay.url}/v1/readings?limit=10${cursor === undefined ? '' : `&after=${cursor}`}`, 'GET');
      expect(r.status).toBe(200);
      expect(typeof r.json.next).toBe('string');
      expect(r.json.next).toMatch(/^(0|[1-9][0-9]*)$/);
      if (r.json.envelopes.length === 0) {
        expect(r.json.next).toBe(cursor);
        break;
      }
      expect(r.json.envelopes.length).toBeLessThanOrEqual(10);
      seen.push(...r.json.envelopes);
      cursor = r.json.next;
    }
    expect(seen).toEqual(posted);
    // Default limit and `after` absent: from the start.
    const d = await request(`${relay.url}/v1/readings`, 'GET');
    expect(d.json.envelopes).toEqual(posted);
    // New envelopes appear after the last cursor.
    const late = envelope({ seq: 1000n });
    await post(relay, late);
    expect((await request(`${relay.url}/v1/readings?after=${cursor}`, 'GET')).json.envelopes).toEqual([hex(late)]);
  });

  test.each([
    ['after=abc'], ['after=-1'], ['after=01'], ['after=1.5'], ['after='], ['after=9223372036854775808'], ['after=1&after=2'],
    ['limit=0'], ['limit=1001'], ['limit=x'], ['limit='], ['limit=-5'], ['limit=1e2'],
  ])('%s → 400', async (q) => {
    const r = await request(`${relay.url}/v1/readings?${q}`, 'GET');
    expect(r.status).toBe(400);
    expect(r.json).toEqual({ error: expect.stringMatching(/^bad-/), message: expect.any(String) });
  });

  test('limit=1000 and after=9223372036854775807 are in range', async () => {
    expect((await request(`${relay.url}/v1/readings?limit=1000`, 'GET')).status).toBe(200);
    const r = await request(`${relay.url}/v1/readings?after=9223372036854775807`, 'GET');
    expect(r.json).toEqual({ envelopes: [], next: '9223372036854775807' });
  });
});

test('durability: every acknowledged envelope is served again after a restart on the same database', async () => {
  const db = newDb();
  let relay = await relayAt(db);
  const acked: string[] = [];
  for (let i = 1; i <= 50; i++) {
    const e = envelope({ seq: BigInt(i), ct: Uint8Array.from(randomBytes(32)) });
    const r = await post(relay, e);
    if (r.status === 202) acked.push(hex(e));
  }
  expect(acked).toHaveLength(50);
  await relay.stop();
  relay = await relayAt(db);
  expect(await all(relay)).toEqual(acked);
  // The dedupe and the variant counts survive too.
  expect((await post(relay, Buffer.from(acked[0].slice(2), 'hex'))).json).toEqual({ stored: false, duplicate: true });
});

// The channel check (on by default) is tested against the real contract in test/relay/retention.test.ts.


import '../helpers/node-random.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from 'node:net';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { privateKeyToAddress } from 'viem/accounts';
import { decodeSlotValue } from '../../lib/device/safe-storage.js';
import { SimDevice } from '../../hosts/sim/device.js';

// The sensor firmware in the XS simulator, without a chain: the §6 console over
// loopback TCP, refusals at boot (corrupt storage, lost identity, no hardware RNG),
// and factory reset, including a power cut in the middle of its wipe.
jest.setTimeout(120_000);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotkx-sim-console-'));
const started: SimDevice[] = [];
const start = async (name: string, extra: Partial<Parameters<typeof SimDevice.start>[0]> = {}) => {
  const d = await SimDevice.start({ dir, name, maxSleepMs: 500, ...extra });
  started.push(d);
  return d;
};
afterAll(async () => {
  await Promise.all(started.map((d) => d.stop()));
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Send lines over TCP, collect `n` reply lines. */
function tcp(port: number, lines: string[], n = lines.length): Promise<any[]> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let buf = '';
    const out: any[] = [];
    s.setEncoding('utf8');
    s.on('error', reject);
    s.on('data', (d: string) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        out.push(JSON.parse(buf.slice(0, i)));
        buf = buf.slice(i + 1);
        if (out.length === n) { s.end(); resolve(out); }
      }
    });
    s.on('connect', () => s.write(lines.map((l) => `${l}\n`).join('')));
  });
}

const config = {
  relayUrl: 'http://127.0.0.1:9/rpc', chainId: '31337', contract: `0x${'11'.repeat(20)}`, receiver: `0x${'22'.repeat(20)}`,
  intervalSec: 60, maxFeePerGas: '1000000000', maxPriorityFeePerGas: '1', offerGas: '120000', maxTxPerDay: 5, blockTime: 1,
  backoffMaxSec: 60, rotation: { maxReadings: 0, maxAgeSec: 0 },
};

/** The identity secret as stored (slot format of lib/device/safe-storage.ts, record format 1). */
function storedSecret(d: SimDevice): string {
  const raw = d.nvs.map.get('id.1') ?? d.nvs.map.get('id.0');
  return Buffer.from(decodeSlotValue('id', raw!)!.value.subarray(1)).toString('hex');
}

test('console over TCP: identity matches the stored key (checked with noble/viem), provision once, errors; the key never printed', async () => {
  const d = await start('tcp');
  const sk = storedSecret(d);
  // Over TCP a line that is not a JSON object closes the connection (test/sim/console-guard.test.ts); the
  // firmware's own answer to one is asked in-process.
  const bad = JSON.parse((await d.consoleLine('not json'))[0]);
  const [id, unknown, st, prov, again, st2] = await tcp(d.consolePort, [
    '{"id":1,"cmd":"identity"}', '{"id":3,"cmd":"format-disk"}', '{"id":4,"cmd":"status"}',
    JSON.stringify({ id: 5, cmd: 'provision', config }), JSON.stringify({ id: 6, cmd: 'provision', config }), '{"id":7,"cmd":"status"}',
  ]);
  expect(id).toMatchObject({ id: 1, ok: true, state: 'unprovisioned', firmware: expect.any(String) });
  expect(id.publicKey).toBe(`0x${Buffer.from(secp256k1.getPublicKey(Buffer.from(sk, 'hex'), false)).toString('hex')}`);
  expect(id.address).toBe(privateKeyToAddress(`0x${sk}`).toLowerCase());
  expect(d.address).toBe(id.address);
  expect(bad).toMatchObject({ id: null, ok: false, error: 'bad-request' });
  expect(unknown).toMatchObject({ id: 3, ok: false, error: 'unknown-command' });
  expect(st).toMatchObject({ id: 4, ok: true, state: 'unprovisioned', readingsQueued: 0 });
  expect(prov).toMatchObject({ id: 5, ok: true, state: 'provisioned' });
  expect(again).toMatchObject({ id: 6, ok: false, error: 'already-provisioned' });
  expect(st2).toMatchObject({ id: 7, ok: true, state: 'provisioned' });
  for (const r of [id, st, prov, st2]) expect(JSON.stringify(r)).not.toContain(sk);
  expect(await d.console({ cmd: 'provision' })).toMatchObject({ ok: false, error: 'bad-request' });
  // Storage: keys ≤ 15 characters, one copy of each logical key at rest.
  for (const k of d.nvs.map.keys()) expect(k.length).toBeLessThanOrEqual(15);
  expect([...d.nvs.map.keys()].sort()).toEqual(['cfg.1', 'id.1']);
});

test('corrupt storage: the firmware refuses to start with a clear console error and writes nothing', async () => {
  const d = await start('corrupt');
  const address = d.address;
  await d.kill();
  d.nvs.corrupt('id.1');
  const before = JSON.stringify([...d.nvs.map]);
  await d.restart();
  expect(d.bootError).toMatchObject({ code: 'storage-corrupt' });
  expect(JSON.parse(d.events.at(-1)!)).toMatchObject({ event: 'boot-failed', error: 'storage-corrupt', message: expect.stringContaining('"id"') });
  const [r] = await tcp(d.consolePort, ['{"id":9,"cmd":"identity"}']);
  expect(r).toMatchObject({ id: 9, ok: false, error: 'storage-corrupt' });
  expect(await d.console({ cmd: 'factory-reset', confirm: address })).toMatchObject({ ok: false, error: 'storage-corrupt' });
  expect(JSON.stringify([...d.nvs.map])).toBe(before);
});

test('identity lost while state remains: refuses instead of making a new identity; no hardware RNG: refuses to make one', async () => {
  const d = await start('lost');
  expect((await d.console({ cmd: 'provision', config })).ok).toBe(true);
  await d.kill();
  d.nvs.delete('id.1'); // as if the identity's slot vanished
  await d.restart();
  expect(d.bootError).toMatchObject({ code: 'identity-missing' });
  expect([...d.nvs.map.keys()]).toEqual(['cfg.1']);

  const n = await start('no-rng', { hardwareRandom: false });
  expect(n.bootError).toMatchObject({ code: 'no-hardware-rng' });
  expect(n.nvs.map.size).toBe(0);
  expect(await n.console({ cmd: 'identity' })).toMatchObject({ ok: false, error: 'no-hardware-rng' });
});

test('factory reset: needs the address; wipes everything and reboots into a new identity, even through a power cut mid-wipe', async () => {
  let cutDeletes = false;
  const d = await start('reset', { cut: (ev) => cutDeletes && ev.step === 'deleted' && ev.key === 'id.1' });
  expect((await d.console({ cmd: 'provision', config })).ok).toBe(true);
  const old = d.address;
  expect(await d.console({ cmd: 'factory-reset', confirm: `0x${'00'.repeat(20)}` })).toMatchObject({ ok: false, error: 'bad-confirmation' });
  cutDeletes = true; // the power goes out right after the identity is deleted, before the reset marker is
  // The wipe runs inside the request: the power goes out before the reply.
  await expect(d.console({ cmd: 'factory-reset', confirm: old.toUpperCase().replace('0X', '0x') })).rejects.toThrow(/exited/);
  expect(d.cuts).toBe(1);
  expect(d.running).toBe(false);
  expect([...d.nvs.map.keys()]).toEqual(['rst.1']);
  cutDeletes = false;
  await d.restart();
  expect(d.bootError).toBeNull();
  expect(d.address).not.toBe(old);
  expect((await d.console({ cmd: 'identity' })).state).toBe('unprovisioned');
  expect([...d.nvs.map.keys()]).toEqual(['id.1']);
  // A plain reboot keeps the identity.
  const addr = d.address;
  expect(await d.console({ cmd: 'reboot' })).toMatchObject({ ok: true });
  let again: any;
  for (let i = 0; i < 100 && !again?.ok; i++) {
    await new Promise((r) => setTimeout(r, 100));
    again = await d.console({ cmd: 'identity' }).catch(() => undefined);
  }
  expect(again).toMatchObject({ ok: true, address: addr });
});

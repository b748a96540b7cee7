import '../helpers/node-random.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SimDevice } from '../../hosts/sim/device.js';
import { until } from '../helpers/until.js';

// Issue 15 item 10: a board boots with its clock at 1970 until SNTP sets it. The firmware must not sign offers or
// seal readings with a meaningless `t`: it holds the loop (exchange and readings) until the clock is plausible,
// asking the platform's network time (Moddable's `sntp`) after joining the network, and says so in `status`.
const config = {
  relayUrl: 'http://127.0.0.1:9/rpc', chainId: '31337', contract: `0x${'11'.repeat(20)}`, receiver: `0x${'22'.repeat(20)}`,
  intervalSec: 60, maxFeePerGas: '1000000000', maxPriorityFeePerGas: '1', offerGas: '120000', maxTxPerDay: 5, blockTime: 1,
  backoffMaxSec: 60, rotation: { maxReadings: 0, maxAgeSec: 0 },
};
let dir: string;
const devices: SimDevice[] = [];
beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotkx-clock-')); });
afterAll(async () => {
  for (const d of devices) await d.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('clock at 0 and no network time: provisioned, but no request and no reading until the clock is set', async () => {
  const http: string[] = [];
  const d = await SimDevice.start({ dir, name: 'noclock', maxSleepMs: 200, clockAtZero: true, networkTime: false, onHttp: (e) => http.push(e.url) });
  devices.push(d);
  expect(await d.console({ cmd: 'provision', config })).toMatchObject({ ok: true, state: 'provisioned' });
  const st = await until('status says the clock is not set', async () => {
    const s = await d.console({ cmd: 'status' });
    return /clock/.test(String(s.tickError)) ? s : undefined;
  }, 30_000);
  expect(st.readings.queued).toBe(0);
  await new Promise((r) => setTimeout(r, 1500));
  expect(http).toEqual([]);
});

test('clock at 0, network time available: the clock is set after joining and the loop starts', async () => {
  const http: string[] = [];
  const d = await SimDevice.start({ dir, name: 'sntp', maxSleepMs: 200, clockAtZero: true, networkTime: true, onHttp: (e) => http.push(e.url) });
  devices.push(d);
  expect(await d.console({ cmd: 'provision', config })).toMatchObject({ ok: true });
  await until('the device talks to its relay', async () => (http.length > 0 ? true : undefined), 30_000);
  const s = await d.console({ cmd: 'status' });
  expect(String(s.tickError ?? '')).not.toMatch(/clock/);
});

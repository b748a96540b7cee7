import '../helpers/node-random.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http, { type Server } from 'node:http';
import { startSystem, type RunningSystem } from '../../hosts/system.js';
import { startHttp } from '../../hosts/receiver/http.js';
import { COOKIE_NAME } from '../../hosts/receiver/dashboard/auth.js';
import { until } from '../helpers/until.js';
import { parse } from 'csv-parse/sync';
import { connect } from '../../hosts/chain/deploy.js';
import { keyExchangeAbi } from '../../contracts/build/KeyExchange.js';

// The receiver's dashboard against a running system (anvil, contract, relay, receiver, two simulated devices
// sending every 2 s), in Debian's headless Chromium driven by playwright-core. Screenshots go to
// test-output/dashboard/ (gitignored). Without Chromium the browser tests are skipped, loudly; the JSON and
// metrics tests run regardless.
const ROOT = path.resolve(__dirname, '../..');
const SHOTS = path.join(ROOT, 'test-output/dashboard');
const CHROMIUM = process.env.IOTKX_CHROMIUM ?? '/usr/bin/chromium';
const haveChromium = fs.existsSync(CHROMIUM);
if (!haveChromium) {
  console.warn(`SKIPPING the dashboard browser tests: no Chromium at ${CHROMIUM} (apt-get install -y chromium; .ci/run installs it)`);
}
const browserTest = haveChromium ? test : test.skip;
jest.setTimeout(180_000);

const getJson = async (url: string, init?: RequestInit) => {
  const res = await fetch(url, init);
  if (!res.ok) throw new Error(`${res.status} from ${url}`);
  return res.json() as Promise<any>;
};

async function rpc(url: string, method: string, params: unknown[]): Promise<any> {
  const body = await getJson(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) });
  if (body.error) throw new Error(body.error.message);
  return body.result;
}

let sys: RunningSystem;
let dir: string;
let devices: string[];
let browser: import('playwright-core').Browser | undefined;

async function launch() {
  const { chromium } = await import('playwright-core');
  // Flags from the machine notes: no sandbox as root, and no background traffic on a closed network.
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotkx-dashboard-'));
  sys = await startSystem({ dataDir: dir, devices: 2, intervalSec: 2, blockTime: 1, offerTtlBlocks: 60 });
  devices = sys.info.devices.map((d) => d.toLowerCase());
  await until('two readings from each device', async () => {
    const list = (await getJson(`${sys.info.receiverUrl}/v1/devices`)) as any[];
    return list.length === 2 && list.every((d) => d.state === 'accepted' && d.readings >= 2);
  }, 120_000);
  if (haveChromium) {
    fs.mkdirSync(SHOTS, { recursive: true });
    browser = await launch();
  }
});

afterAll(async () => {
  await browser?.close();
  await sys?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('history and overview JSON agree with the chain; §9 /v1/devices keeps exactly its fields', async () => {
  const base = sys.info.receiverUrl;
  const list = (await getJson(`${base}/v1/devices`)) as any[];
  for (const d of list) {
    expect(Object.keys(d).sort()).toEqual(['device', 'epoch', 'gaps', 'keyVersion', 'lastSeq', 'pendingEpoch', 'readings', 'state']);
  }
  const overview = await getJson(`${base}/v1/dashboard`);
  expect(overview.devices.map((d: any) => d.device).sort()).toEqual([...devices].sort());
  expect(overview.lastBlock).toBeGreaterThan(0);
  // Why the receiver waits (issue 16): the watcher's status, the same object /healthz carries.
  expect(overview.watcher).toMatchObject({ confirmations: 2, head: expect.any(Number), waiting: expect.any(Array) });
  expect((await getJson(`${base}/healthz`)).chain.confirmations).toBe(2);
  for (const d of overview.devices) {
    expect(d.keyAgeSec).toBeGreaterThanOrEqual(0);
    expect(d.replaysRefused).toBe(0);
    expect(typeof d.lastReading.values.temp).toBe('number');
    expect(BigInt(d.lastReading.seq)).toBeGreaterThanOrEqual(2n);
  }
  for (const device of devices) {
    const h = await getJson(`${base}/v1/devices/${device}/history`);
    expect(h.epochs[0]).toMatchObject({ epoch: '1', state: 'accepted', keyVersion: 1 });
    const e = h.epochs[0];
    // The chain's own receipts, not our store, say where the offer and the acceptance landed.
    const offer = await rpc(sys.info.rpcUrl, 'eth_getTransactionReceipt', [e.offerTx]);
    expect(offer.from.toLowerCase()).toBe(device);
    expect(offer.to.toLowerCase()).toBe(sys.info.contract.toLowerCase());
    expect(Number(offer.blockNumber)).toBe(e.offerBlock);
    const accept = await rpc(sys.info.rpcUrl, 'eth_getTransactionReceipt', [e.actionTx]);
    expect(accept.from.toLowerCase()).toBe(sys.info.receiverAddress.toLowerCase());
    expect(accept.status).toBe('0x1');
    expect(Number(accept.blockNumber)).toBe(e.acceptBlock);
  }
  expect((await fetch(`${base}/v1/devices/0x${'00'.repeat(20)}/history`)).status).toBe(404);
  expect((await fetch(`${base}/v1/devices/nope/history`)).status).toBe(400);
  expect((await fetch(`${base}/v1/devices/%zz/history`)).status).toBe(400);
});

/** Status of GET `path` sent with this Host header (fetch will not let a caller choose Host). */
function statusWithHost(base: string, path: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${base}${path}`, { headers: { host } }, (res) => { res.resume(); resolve(res.statusCode!); });
    req.on('error', reject);
  });
}

test('on loopback, requests addressed to another name are refused (DNS rebinding); loopback names pass', async () => {
  const base = sys.info.receiverUrl;
  const port = new URL(base).port;
  for (const p of ['/', '/v1/devices', '/v1/dashboard']) {
    expect(await statusWithHost(base, p, `attacker.example:${port}`)).toBe(403);
    expect(await statusWithHost(base, p, `127.0.0.1.attacker.example`)).toBe(403);
    expect(await statusWithHost(base, p, `localhost:${port}`)).toBe(200);
    expect(await statusWithHost(base, p, `127.0.0.1:${port}`)).toBe(200);
  }
});

test('metrics: exchanges by outcome, readings by reason, queue depths, upstream errors and request latencies', async () => {
  const text = await (await fetch(`${sys.info.receiverUrl}/metrics`)).text();
  const value = (t: string, series: string) => {
    const line = t.split('\n').find((l) => l.startsWith(`${series} `));
    if (!line) throw new Error(`no ${series} in\n${t}`);
    return Number(line.slice(series.length + 1));
  };
  expect(value(text, 'iotkx_receiver_exchanges_total{outcome="accepted"}')).toBe(2);
  expect(value(text, 'iotkx_receiver_readings_accepted_total')).toBeGreaterThanOrEqual(4);
  expect(value(text, 'iotkx_receiver_parked_envelopes')).toBe(0);
  expect(text).toContain('# TYPE iotkx_receiver_readings_refused_total counter');
  expect(text).toContain('# TYPE iotkx_receiver_errors_total counter');
  // Requests made by the test above were timed under a bounded route label.
  expect(value(text, 'iotkx_receiver_http_request_duration_seconds_count{route="history"}')).toBeGreaterThanOrEqual(2);
  expect(value(text, 'iotkx_receiver_http_requests_total{route="history",status="404"}')).toBe(1);

  const relay = await (await fetch(`${sys.relay.url}/metrics`)).text();
  const stored = value(relay, 'iotkx_relay_envelopes_stored');
  expect(stored).toBeGreaterThanOrEqual(4);
  expect(stored).toBeGreaterThanOrEqual(value(relay, 'iotkx_relay_readings_total{result="stored"}'));
  expect(relay).toContain('# TYPE iotkx_relay_upstream_errors_total counter');
  expect(relay).toContain('iotkx_relay_http_request_duration_seconds_bucket');
});

/** Pixels of the chart's canvas in the first series' colour (#d9480f): something was drawn, not just an empty frame. */
const painted = () => {
  const c = (globalThis as any).document.querySelector('#chart canvas');
  if (!c) return 0;
  const px: Uint8ClampedArray = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < px.length; i += 4) if (Math.abs(px[i] - 217) < 20 && Math.abs(px[i + 1] - 72) < 20 && Math.abs(px[i + 2] - 15) < 20) n++;
  return n;
};

browserTest('loopback: the page lists the devices, charts their readings and shows a new one without a reload', async () => {
  const context = await browser!.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  let loads = 0;
  page.on('load', () => { loads++; });
  try {
    const res = await page.goto(sys.info.receiverUrl);
    expect(res!.status()).toBe(200);
    for (const d of devices) {
      await page.locator(`#devices tr[data-device="${d}"] td.state-accepted`).waitFor({ timeout: 30_000 });
    }
    expect(await page.locator('#devices tbody tr').count()).toBe(2);
    // The first device is selected: its chart plots what §9's readings endpoint holds for it.
    const shown = await page.locator('#detail-address').textContent();
    expect(devices).toContain(shown);
    await page.waitForFunction(() => Number((globalThis as any).document.querySelector('#chart')?.getAttribute('data-points')) >= 2, undefined, { timeout: 30_000 });
    expect(await page.locator('#chart').getAttribute('data-series')).toContain('temp');
    expect(await page.evaluate(painted)).toBeGreaterThan(20);
    // Units in the legend (the axes, drawn on the canvas, use the same labels); before any hover the legend
    // shows the latest values, not "--".
    expect(await page.locator('#chart .u-legend .u-series .u-label').allTextContents()).toEqual(expect.arrayContaining(['temp (°C)', 'rh (%)']));
    const legendValues = (await page.locator('#chart .u-legend .u-series .u-value').allTextContents()).slice(1);
    expect(legendValues.length).toBeGreaterThan(0);
    for (const v of legendValues) expect(v).toMatch(/\d/);
    await page.locator('#history tr[data-epoch="1"] td.state-accepted').waitFor();
    await page.screenshot({ path: path.join(SHOTS, '1-loopback.png'), fullPage: true });

    // Live: more points and a higher count arrive while the page stays loaded.
    const before = Number(await page.locator('#chart').getAttribute('data-points'));
    const countBefore = Number(await page.locator(`#devices tr[data-device="${shown}"] td.readings`).textContent());
    await page.evaluate(() => { (globalThis as any).__sameDocument = true; });
    await page.waitForFunction((n) => Number((globalThis as any).document.querySelector('#chart')?.getAttribute('data-points')) > n, before, { timeout: 30_000 });
    await until('the readings count to rise', async () =>
      Number(await page.locator(`#devices tr[data-device="${shown}"] td.readings`).textContent()) > countBefore, 30_000);
    expect(await page.evaluate(() => (globalThis as any).__sameDocument)).toBe(true);
    expect(loads).toBe(1);
    const api = await getJson(`${sys.info.receiverUrl}/v1/devices/${shown}/readings?limit=1000`);
    expect(Number(await page.locator('#chart').getAttribute('data-points'))).toBeLessThanOrEqual(api.readings.length);
    await page.screenshot({ path: path.join(SHOTS, '2-new-reading.png'), fullPage: true });

    // The other device: a click switches the chart and the history to it.
    const other = devices.find((d) => d !== shown)!;
    await page.locator(`#devices tr[data-device="${other}"]`).click();
    await until('the other device selected', async () => (await page.locator('#detail-address').textContent()) === other);
    await page.waitForFunction(() => Number((globalThis as any).document.querySelector('#chart')?.getAttribute('data-points')) >= 2, undefined, { timeout: 30_000 });
    const h = await getJson(`${sys.info.receiverUrl}/v1/devices/${other}/history`);
    await expect(page.locator('#history tr[data-epoch="1"] td.hash').first().getAttribute('title')).resolves.toBe(h.epochs[0].offerTx);
    expect(page.url()).toBe(`${sys.info.receiverUrl}/#${other}`);
    await page.screenshot({ path: path.join(SHOTS, '3-other-device.png'), fullPage: true });
    expect(errors).toEqual([]);
  } finally {
    await context.close();
  }
});

browserTest('bound to 127.0.0.2: refused without the token; /?token= once sets an HttpOnly cookie and the page works', async () => {
  const token = 'dashboard-test-token-0123456789';
  const log = () => {};
  const { server, url } = await startHttp({ host: '127.0.0.2', port: 0, token }, sys.receiver.store, sys.receiver.metrics, log);
  const context = await browser!.newContext({ viewport: { width: 1400, height: 900 } });
  try {
    for (const p of ['/', '/dashboard/app.js', '/v1/dashboard', `/v1/devices/${devices[0]}/history`, '/v1/devices', '/metrics', '/?token=wrong']) {
      expect([p, (await fetch(`${url}${p}`, { redirect: 'manual' })).status]).toEqual([p, 401]);
    }
    const page = await context.newPage();
    expect((await page.goto(url))!.status()).toBe(401);
    expect(await page.locator('body').textContent()).toContain('unauthorized');
    await page.screenshot({ path: path.join(SHOTS, '4-token-refused.png') });
    expect((await page.goto(`${url}/?token=not-the-token`))!.status()).toBe(401);

    const res = await page.goto(`${url}/?token=${token}`);
    expect(res!.status()).toBe(200);
    expect(page.url()).toBe(`${url}/`); // the token left the address bar
    for (const d of devices) await page.locator(`#devices tr[data-device="${d}"] td.state-accepted`).waitFor({ timeout: 30_000 });
    await page.waitForFunction(() => Number((globalThis as any).document.querySelector('#chart')?.getAttribute('data-points')) >= 2, undefined, { timeout: 30_000 });
    expect(await page.evaluate(() => (globalThis as any).document.cookie)).toBe(''); // HttpOnly: page scripts cannot read it
    const [cookie] = await context.cookies();
    expect(cookie).toMatchObject({ name: COOKIE_NAME, httpOnly: true, sameSite: 'Strict' });
    expect(cookie.value).not.toContain(token);
    // The cookie opens the API to this browser, and the header still works for programs.
    expect(await page.evaluate(async () => (await fetch('/v1/devices')).status)).toBe(200);
    expect((await fetch(`${url}/v1/devices`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    expect((await fetch(`${url}/v1/devices`, { headers: { cookie: `${COOKIE_NAME}=${cookie.value}` } })).status).toBe(200);
    expect((await fetch(`${url}/v1/devices`, { headers: { cookie: `${COOKIE_NAME}=${cookie.value.replace(/.$/, (c) => (c === '0' ? '1' : '0'))}` } })).status).toBe(401);
    await page.screenshot({ path: path.join(SHOTS, '5-token-ok.png'), fullPage: true });

    // The download link: a CSV of the selected device, through the cookie, that parses back to what §9 serves.
    const shown = (await page.locator('#detail-address').textContent())!;
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#download-csv').click()]);
    expect(download.suggestedFilename()).toBe(`iotkx-readings-${shown}.csv`);
    const rows = parse(fs.readFileSync((await download.path())!, 'utf8'), { columns: true }) as Record<string, string>[];
    const api = await getJson(`${url}/v1/devices/${shown}/readings?limit=1000`, { headers: { authorization: `Bearer ${token}` } });
    expect(rows.length).toBeGreaterThanOrEqual(2);
    for (const r of rows) {
      expect(r.device).toBe(shown);
      const same = api.readings.find((x: any) => x.epoch === r.epoch && x.seq === r.seq);
      if (!same) continue; // a reading newer than the API page fetched after the download
      expect(Number(r.temp)).toBe(same.values.temp);
      expect(r.receivedAt).toBe(same.receivedAt);
    }
    expect(rows.filter((r) => api.readings.some((x: any) => x.seq === r.seq && x.epoch === r.epoch)).length).toBeGreaterThanOrEqual(2);
    // Without the cookie or a token the export is refused like every other route.
    expect((await fetch(`${url}/v1/devices/${shown}/readings?format=csv`)).status).toBe(401);
  } finally {
    await context.close();
    server.closeAllConnections();
    await new Promise<void>((r) => (server as Server).close(() => r()));
  }
});

// Runs last: it revokes one of the two devices.
test('a revoked device does not look healthy: its history shows the revocation, the page says so', async () => {
  const victim = devices[1];
  const operatorKey = fs.readFileSync(sys.info.operatorKeyFile, 'utf8').trim() as `0x${string}`;
  const op = await connect(sys.info.rpcUrl, operatorKey, sys.info.chainId);
  const hash = await op.walletClient.writeContract({ address: sys.info.contract, abi: keyExchangeAbi, functionName: 'revoke', args: [sys.info.receiverAddress, victim as `0x${string}`] });
  const receipt = await op.publicClient.waitForTransactionReceipt({ hash });
  expect(receipt.status).toBe('success');
  const base = sys.info.receiverUrl;
  const h = await until('the receiver to see the revocation', async () => {
    const body = await getJson(`${base}/v1/devices/${victim}/history`);
    return body.status === 'revoked' ? body : undefined;
  }, 60_000);
  expect(h.revokedBlock).toBe(Number(receipt.blockNumber));
  expect((await getJson(`${base}/v1/devices`)).find((d: any) => d.device === victim).state).toBe('revoked');
  // The device has not noticed yet and keeps sealing: its authentic readings are refused, and that shows.
  const refused = await until('refused readings of the revoked device', async () => {
    const o = await getJson(`${base}/v1/dashboard`);
    const d = o.devices.find((x: any) => x.device === victim);
    return d.refused > 0 ? d.refused : undefined;
  }, 60_000);
  expect((await getJson(`${base}/v1/devices/${victim}/history`)).refused.revoked).toBeGreaterThanOrEqual(refused);
  if (!browser) return;
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  try {
    const page = await context.newPage();
    await page.goto(base);
    await page.locator(`#devices tr[data-device="${victim}"] td.state-revoked`).waitFor({ timeout: 30_000 });
    await page.locator(`#devices tr[data-device="${victim}"]`).click();
    const row = page.locator('#history tr.revoked');
    await row.waitFor({ timeout: 30_000 });
    expect(await row.textContent()).toContain(`revoked at block ${receipt.blockNumber}`);
    expect(await row.textContent()).toMatch(/\d+ of its readings refused since/);
    expect(Number(await page.locator(`#devices tr[data-device="${victim}"] td.refused`).textContent())).toBeGreaterThan(0);
    await page.screenshot({ path: path.join(SHOTS, '6-revoked.png'), fullPage: true });
  } finally {
    await context.close();
  }
});

/**
 * The firmware's platform on a Moddable SDK build (ESP32, or lin/mac/win through
 * mcsim): raw NVS through `preference`, `timer`, the legacy `http` client with the
 * 8 KiB response cap (§5.3), and the board's own parts (console port, network, sensor,
 * hardware RNG, restart) from ./board.js, which the manifest maps per platform.
 */
import Preference from 'preference';
import Timer from 'timer';
import SNTP from 'sntp';
import Time from 'time';
import config from 'mc/config';
import { Request } from 'http';
import { IotkxError } from '../../../lib/errors.js';
import { MAX_RESPONSE_BYTES, type HttpResponse, type Storage, type Transport } from '../../../lib/platform.js';
// By module name, not './board.js': the manifest maps this name to board.ts (esp32) or board-desktop.ts
// (lin/mac/win), and mcconfig's tsc resolves names through the same map, so each platform type-checks its own board.
import { board } from 'devices/sensor/platform/board';
import type { FirmwarePlatform } from './types.js';

/** NVS namespace (≤ 15 characters). */
const DOMAIN = 'iotkx';
/** Relay calls that take longer than this fail as transport errors. */
const HTTP_TIMEOUT_MS = 15_000;

const toBytes = (b: ArrayBuffer) => new Uint8Array(b);
/** A copy in a fresh ArrayBuffer (`b.buffer` may be a read-only HostBuffer on Moddable, which has no slice). */
function toBuffer(b: Uint8Array): ArrayBuffer {
  const out = new ArrayBuffer(b.byteLength);
  new Uint8Array(out).set(b);
  return out;
}

const storage: Storage = {
  get(key) {
    const v = Preference.get(DOMAIN, key);
    return v instanceof ArrayBuffer ? toBytes(v) : undefined;
  },
  set(key, value) { Preference.set(DOMAIN, key, toBuffer(value)); },
  delete(key) { Preference.delete(DOMAIN, key); },
};

/** http://host[:port]/path only: the legacy client here speaks plain HTTP (TLS needs the SDK's `secure` socket). */
function parseUrl(url: string): { host: string; port: number; path: string } {
  const m = /^http:\/\/([^/:]+)(?::([0-9]+))?(\/.*)?$/.exec(url);
  if (!m) throw new IotkxError('transport-error', `unsupported relay URL ${url} (plain http:// only on this build)`);
  return { host: m[1], port: m[2] ? Number(m[2]) : 80, path: m[3] ?? '/' };
}

const transport: Transport = {
  request(method, url, body, contentType): Promise<HttpResponse> {
    return new Promise((resolve, reject) => {
      const { host, port, path } = parseUrl(url);
      const headers: Array<string | number> = ['Connection', 'close'];
      if (contentType) headers.push('Content-Type', contentType);
      if (body) headers.push('Content-Length', body.length);
      const req = new Request({ host, port, path, method, headers, body: body ? toBuffer(body) : undefined });
      let status = 0;
      const chunks: Uint8Array[] = [];
      let size = 0;
      let done = false;
      const finish = (err: IotkxError | undefined) => {
        if (done) return;
        done = true;
        Timer.clear(timer);
        if (err) { try { req.close(); } catch { /* already closed */ } reject(err); return; }
        const out = new Uint8Array(size);
        let at = 0;
        for (const c of chunks) { out.set(c, at); at += c.length; }
        resolve({ status, body: out });
      };
      const timer = Timer.set(() => finish(new IotkxError('transport-error', `${method} ${url}: timeout`)), HTTP_TIMEOUT_MS);
      const tooLarge = () => new IotkxError('response-too-large', `${url}: response over ${MAX_RESPONSE_BYTES} bytes`);
      req.callback = function (message: number, a?: any, b?: any) {
        if (message === Request.status) status = a;
        else if (message === Request.header && String(a).toLowerCase() === 'content-length' && Number(b) > MAX_RESPONSE_BYTES) finish(tooLarge());
        else if (message === Request.responseFragment) {
          const chunk = toBytes(this.read(ArrayBuffer));
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) finish(tooLarge());
          else chunks.push(chunk);
        } else if (message === Request.responseComplete) finish(undefined);
        else if (message < 0) finish(new IotkxError('transport-error', `${method} ${url}: connection failed`));
      };
    });
  },
};

/** Set the clock from SNTP (mc/config `sntp`, pool.ntp.org from manifest_net); the app calls it after Wi-Fi joins. */
function syncClock(): Promise<void> {
  const host = (config as { sntp?: string }).sntp ?? 'pool.ntp.org';
  return new Promise((resolve, reject) => {
    // The SDK's SNTP retries by itself (message 2) and reports -1 when it gives up.
    new SNTP({ host }, (message, value) => {
      if (message === SNTP.time && typeof value === 'number') { Time.set(value); resolve(); }
      else if (message === SNTP.error) reject(new IotkxError('no-network-time', `SNTP ${host}: no answer`));
    });
  });
}

export function moddablePlatform(): FirmwarePlatform {
  return {
    firmware: board.firmware,
    storage,
    random: board.random,
    // Time.ticks: milliseconds since boot, untouched by SNTP and Time.set: the signing budget's clock (lib/platform.ts).
    clock: { now: () => Date.now(), monotonic: () => Time.ticks },
    syncClock,
    transport,
    sensor: board.sensor,
    console: board.console,
    network: board.network,
    setTimer(cb, ms) { Timer.set(() => { void cb(); }, ms); },
    restart: board.restart,
    log: (line) => trace(`${line}\n`),
  };
}

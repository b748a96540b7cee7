/**
 * Runs inside the XS worker: exposes named functions to the Node host and lets
 * guest code call back into the host synchronously (xsnap's issueCommand blocks
 * until Node answers, as a device's native call would).
 */
import { decodeMessage, encodeMessage } from './wire.js';

declare const issueCommand: (msg: ArrayBuffer) => ArrayBuffer;
type Methods = Record<string, (...args: any[]) => unknown>;

function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

/** Install `handleCommand` so the host can call `methods` by name. */
export function serve(methods: Methods): void {
  (globalThis as any).handleCommand = (msg: ArrayBuffer) => {
    // xsnap reads `result` after it has run every pending promise job, so an
    // async method whose awaits resolve within the delivery can answer.
    const box: { result?: ArrayBuffer } = {};
    const settle = (reply: unknown) => { box.result = toArrayBuffer(encodeMessage(reply)); };
    try {
      const { m, a } = decodeMessage(new Uint8Array(msg));
      const fn = methods[m];
      if (typeof fn !== 'function') throw new Error(`no such method in worker: ${m}`);
      Promise.resolve(fn(...a)).then(
        (ok) => settle({ ok: ok === undefined ? null : ok }),
        (e) => settle({ error: { name: e?.name ?? 'Error', code: e?.code, message: String(e?.message ?? e) } }),
      );
    } catch (e: any) {
      settle({ error: { name: e?.name ?? 'Error', code: e?.code, message: String(e?.message ?? e) } });
    }
    return box;
  };
}

/** Call the Node host synchronously. Host errors are rethrown here. */
export function hostCall(method: string, ...args: unknown[]): any {
  const reply = decodeMessage(new Uint8Array(issueCommand(toArrayBuffer(encodeMessage({ m: method, a: args })))));
  if ('error' in reply) {
    const err = new Error(reply.error.message) as Error & { code?: string };
    // Not `err.name = ...`: Error.prototype is frozen in this realm as on the device (hosts/xs/freeze.ts).
    Object.defineProperty(err, 'name', { value: reply.error.name, configurable: true });
    if (reply.error.code) err.code = reply.error.code;
    throw err;
  }
  return reply.ok;
}

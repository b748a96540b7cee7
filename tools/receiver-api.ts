/** The receiver's §9 HTTP API (GET /v1/devices, GET /v1/devices/<address>/readings), with exit-6 errors. */
import type { DeviceRow } from '../hosts/receiver/http.js';
import { serviceError } from './errors.js';

/** A device as the receiver's `GET /v1/devices` lists it (PROTOCOL.md §9). */
export type ReceiverDevice = DeviceRow;

export interface Reading {
  epoch: string;
  seq: string;
  values: Record<string, unknown>;
  receivedAt: string;
}

export async function getJson<T>(url: string, opts: { allow404?: boolean } = {}): Promise<T | undefined> {
  const headers: Record<string, string> = {};
  if (process.env.IOTKX_RECEIVER_TOKEN) headers.authorization = `Bearer ${process.env.IOTKX_RECEIVER_TOKEN}`;
  let res: Response;
  try {
    res = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause?.code;
    throw serviceError('unreachable', `receiver API unreachable at ${new URL(url).origin}: ${cause ?? (e as Error).message}`, 'is the receiver running? (`npm start`, or pass --receiver-url)');
  }
  if (res.status === 404 && opts.allow404) return undefined;
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    throw serviceError('bad-answer', `receiver API ${url} answered ${res.status} with non-JSON`);
  }
  if (!res.ok) throw serviceError(String(body?.error ?? res.status), `receiver API ${url}: ${res.status} ${body?.error ?? ''}${body?.message ? `: ${body.message}` : ''}`, res.status === 401 ? 'set IOTKX_RECEIVER_TOKEN' : undefined);
  return body as T;
}

export const listDevices = (base: string) => getJson<ReceiverDevice[]>(`${base}/v1/devices`) as Promise<ReceiverDevice[]>;

export async function readingsPage(base: string, device: string, after: string | undefined, limit: number): Promise<{ readings: Reading[]; next: string } | undefined> {
  const q = new URLSearchParams({ limit: String(limit) });
  if (after !== undefined) q.set('after', after);
  return getJson(`${base}/v1/devices/${device}/readings?${q}`, { allow404: true });
}

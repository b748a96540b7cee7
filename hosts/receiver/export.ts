/**
 * Export of decrypted readings, beside §9's paged JSON: a time window (`since`, `until`), newest first or the
 * latest N, as CSV or JSON Lines, for one device or all. Rows stream from SQLite, so a year of readings never
 * sits in memory.
 *
 * The window is on `receivedAt` (the receiver's clock): the device's `t` is unauthenticated and advisory
 * (PROTOCOL.md §7), so it cannot bound what a provider is billed or audited on. Both ends are inclusive.
 */
import { unpad, type Store } from './store.js';

export type ExportFormat = 'csv' | 'jsonl' | 'json';

export interface ExportQuery {
  /** Lowercase 0x address, or undefined for every device. */
  device?: string;
  sinceMs?: number;
  untilMs?: number;
  /** 'asc' by (epoch, seq) per device as §9 orders, or 'desc' (newest received first). */
  order: 'asc' | 'desc';
  /** At most this many rows (with order 'desc': the latest N). */
  limit?: number;
  format: ExportFormat;
}

export class ExportQueryError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'ExportQueryError';
  }
}

/** `2026-12-03T12:00:00Z` (RFC 3339) or unix seconds (`1796303403`, fractions allowed). */
export function parseTime(text: string, name: string): number {
  if (/^\d{1,12}(\.\d{1,6})?$/.test(text)) return Math.round(Number(text) * 1000);
  // RFC 3339 needs a date, a time and an offset; Date.parse alone would take "2026" or "next tuesday"-like input.
  if (/^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})$/.test(text)) {
    const ms = Date.parse(text.replace(' ', 'T'));
    if (Number.isFinite(ms)) return ms;
  }
  throw new ExportQueryError(`bad-${name}`, `${name} must be an RFC 3339 time (2026-12-03T12:00:00Z) or unix seconds`);
}

/** Reads the export options from URL search parameters (the API) — the CLI builds the same URL. */
export function exportQueryOf(params: URLSearchParams, device?: string): ExportQuery {
  if (!params.has('format')) {
    throw new ExportQueryError('bad-format', 'since, until, order and latest select an export: add format=csv, jsonl or json');
  }
  const format = params.get('format') as ExportFormat;
  if (format !== 'csv' && format !== 'jsonl' && format !== 'json') throw new ExportQueryError('bad-format', 'format must be csv, jsonl or json');
  const order = params.get('order') ?? 'asc';
  if (order !== 'asc' && order !== 'desc') throw new ExportQueryError('bad-order', 'order must be asc or desc');
  const q: ExportQuery = { device, format, order };
  const since = params.get('since');
  const until = params.get('until');
  if (since !== null) q.sinceMs = parseTime(since, 'since');
  if (until !== null) q.untilMs = parseTime(until, 'until');
  if (q.sinceMs !== undefined && q.untilMs !== undefined && q.sinceMs > q.untilMs) {
    throw new ExportQueryError('bad-window', 'since is after until');
  }
  const latest = params.get('latest');
  const limit = params.get('limit');
  if (latest !== null && limit !== null) throw new ExportQueryError('bad-limit', 'give latest or limit, not both');
  const n = latest ?? limit;
  if (n !== null) {
    if (!/^[1-9][0-9]{0,8}$/.test(n)) throw new ExportQueryError('bad-limit', `${latest !== null ? 'latest' : 'limit'} must be a positive integer`);
    q.limit = Number(n);
  }
  if (latest !== null) q.order = 'desc';
  return q;
}

interface Row { device: string; epoch: string; seq: string; values_json: string; received_ms: number }

function rowsOf(store: Store, q: ExportQuery): IterableIterator<Row> {
  const where: string[] = [];
  const args: (string | number)[] = [];
  if (q.device) { where.push('device = ?'); args.push(q.device); }
  if (q.sinceMs !== undefined) { where.push('received_ms >= ?'); args.push(q.sinceMs); }
  if (q.untilMs !== undefined) { where.push('received_ms <= ?'); args.push(q.untilMs); }
  const order = q.order === 'desc' ? 'received_ms DESC, rowid DESC' : 'device, epoch, seq';
  const sql = `SELECT device, epoch, seq, values_json, received_ms FROM readings${where.length ? ` WHERE ${where.join(' AND ')}` : ''}` +
    ` ORDER BY ${order}${q.limit ? ' LIMIT ?' : ''}`;
  if (q.limit) args.push(q.limit);
  return store.db.prepare(sql).iterate(...args) as IterableIterator<Row>;
}

/** RFC 4180 field: quoted when it holds a comma, quote or line break. */
function csvField(v: unknown): string {
  if (v === undefined || v === null) return '';
  const s = typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : JSON.stringify(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The value columns of a CSV export: every quantity name in the selected rows, sorted, `t` first. */
function columnsOf(store: Store, q: ExportQuery): string[] {
  const names = new Set<string>();
  for (const r of rowsOf(store, q)) for (const k of Object.keys(JSON.parse(r.values_json))) names.add(k);
  return [...names].sort((a, b) => (a === 't' ? -1 : b === 't' ? 1 : a < b ? -1 : a > b ? 1 : 0));
}

/**
 * The export as text chunks (one header line for CSV, then one line per reading), for a caller to stream.
 * CSV columns: device, epoch, seq, receivedAt, then each quantity (docs: hosts/receiver/README.md).
 */
export function* exportLines(store: Store, q: ExportQuery): Generator<string> {
  if (q.format === 'csv') {
    const cols = columnsOf(store, q);
    yield `${['device', 'epoch', 'seq', 'receivedAt', ...cols].map(csvField).join(',')}\r\n`;
    for (const r of rowsOf(store, q)) {
      const v = JSON.parse(r.values_json) as Record<string, unknown>;
      const fields = [r.device, unpad(r.epoch).toString(), unpad(r.seq).toString(), new Date(r.received_ms).toISOString(),
        ...cols.map((c) => (Object.prototype.hasOwnProperty.call(v, c) ? v[c] : undefined))];
      yield `${fields.map(csvField).join(',')}\r\n`;
    }
    return;
  }
  const json = (r: Row) => JSON.stringify({ device: r.device, epoch: unpad(r.epoch).toString(), seq: unpad(r.seq).toString(), values: JSON.parse(r.values_json), receivedAt: new Date(r.received_ms).toISOString() });
  if (q.format === 'json') {
    yield '{"readings":[';
    let first = true;
    for (const r of rowsOf(store, q)) {
      yield `${first ? '' : ','}${json(r)}`;
      first = false;
    }
    yield ']}\n';
    return;
  }
  for (const r of rowsOf(store, q)) yield `${json(r)}\n`;
}

/** Query parameters that select an export rather than §9's paged JSON. */
export const EXPORT_PARAMS = ['format', 'since', 'until', 'order', 'latest'] as const;

export function isExportQuery(params: URLSearchParams): boolean {
  return EXPORT_PARAMS.some((p) => params.has(p));
}

export const EXPORT_CONTENT_TYPE: Record<ExportFormat, string> = {
  csv: 'text/csv; charset=utf-8; header=present',
  jsonl: 'application/jsonl; charset=utf-8',
  json: 'application/json; charset=utf-8',
};

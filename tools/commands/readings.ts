/**
 * `iotkx readings <device>`: the device's decrypted readings from the receiver API (§9), oldest first,
 * as a table or (--json) one JSON object a line; --follow keeps polling for new ones until Ctrl-C.
 * `iotkx readings <device|--all> --format csv|jsonl|json [--since T] [--until T] [--latest N]` is an export:
 * the receiver's export route streamed to stdout (or --output FILE).
 */
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { need, Out, resolveSettings, type GlobalOpts } from '../context.js';
import { serviceError } from '../errors.js';
import { readingsPage, type Reading } from '../receiver-api.js';
import { intArg } from './pair.js';
import { parseDevice } from './status.js';
import { unitOf } from '../../lib/quantities.js';
import { CliError, EXIT } from '../errors.js';

export function registerReadings(program: Command): void {
  program.command('readings')
    .argument('[device]', 'device address (or --all with --format)')
    .summary('decrypted readings of a device (table, or JSON lines with --json)')
    .description('Prints the readings the receiver decrypted for <device>, in (epoch, seq) order. --json prints one JSON object per line ({epoch, seq, values, receivedAt}); --follow keeps printing new ones; when the receiver stops answering it re-reads the join file, so it follows a restarted `npm start` to its new port.')
    .option('-f, --follow', 'keep polling for new readings until Ctrl-C')
    .option('--last <n>', 'only the last n readings (before following)', intArg(1))
    .option('--after <cursor>', 'start after this cursor (as returned in `next`)')
    .option('--poll <ms>', 'poll interval with --follow', intArg(100), 2000)
    .option('--format <format>', 'export instead: csv, jsonl or json, streamed from the receiver')
    .option('--all', 'export every device (with --format)')
    .option('--since <time>', 'export: received at or after (RFC 3339, e.g. 2026-12-03T00:00:00Z, or unix seconds)')
    .option('--until <time>', 'export: received at or before (same forms)')
    .option('--latest <n>', 'export: only the n newest, newest first', intArg(1))
    .option('--newest-first', 'export: newest first')
    .option('-o, --output <file>', 'export: write to this file instead of stdout')
    .action(async (deviceArg: string | undefined, o: { follow?: boolean; last?: number; after?: string; poll: number; format?: string; all?: boolean; since?: string; until?: string; latest?: number; newestFirst?: boolean; output?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOpts;
      const out = new Out(!!g.json);
      if (o.format !== undefined || o.all) return exportReadings(need(resolveSettings(g), 'receiverUrl'), deviceArg, o);
      if (o.since !== undefined || o.until !== undefined || o.latest !== undefined || o.newestFirst) {
        throw new CliError(EXIT.usage, 'bad-flags', '--since, --until, --latest and --newest-first belong to an export: add --format csv, jsonl or json (the table takes --last N)');
      }
      if (deviceArg === undefined) throw new CliError(EXIT.usage, 'missing-device', 'name a device address (or export every device: --all --format csv)');
      const device = parseDevice(deviceArg);
      let base = need(resolveSettings(g), 'receiverUrl');
      let cursor = o.after;
      let printedHeader = false;
      // The last (epoch, seq) printed: a receiver found anew (a restarted system) may page from the start again.
      let lastKey: [bigint, bigint] | undefined;
      const print = (rows: Reading[]) => {
        for (const r of rows) {
          const key: [bigint, bigint] = [BigInt(r.epoch), BigInt(r.seq)];
          if (lastKey && (key[0] < lastKey[0] || (key[0] === lastKey[0] && key[1] <= lastKey[1]))) continue;
          lastKey = key;
          if (g.json) {
            process.stdout.write(`${JSON.stringify({ device, epoch: r.epoch, seq: r.seq, values: r.values, receivedAt: r.receivedAt })}\n`);
            continue;
          }
          if (!printedHeader) {
            process.stdout.write(`${'receivedAt'.padEnd(24)} ${'epoch'.padStart(5)} ${'seq'.padStart(6)}  values\n`);
            printedHeader = true;
          }
          const vals = Object.entries(r.values).map(([k, v]) => (k === 't' ? `t=${new Date(Number(v) * 1000).toISOString().slice(11, 19)}` : `${k}=${v}${unitOf(k) ? ` ${unitOf(k)}` : ''}`)).join('  ');
          process.stdout.write(`${r.receivedAt.padEnd(24)} ${r.epoch.padStart(5)} ${r.seq.padStart(6)}  ${vals}\n`);
        }
      };
      const fetchAll = async (): Promise<Reading[]> => {
        const rows: Reading[] = [];
        for (;;) {
          const page = await readingsPage(base, device, cursor, 500);
          if (!page) throw serviceError('unknown-device', `the receiver knows no device ${device}`, 'is it enrolled to this receiver? `iotkx status ' + device + '`');
          rows.push(...page.readings);
          if (page.next !== undefined && page.next !== null) cursor = String(page.next);
          if (page.readings.length < 500) return rows;
        }
      };
      const first = await fetchAll();
      print(o.last !== undefined ? first.slice(-o.last) : first);
      if (!o.follow) {
        if (!first.length) out.note(`no readings from ${device} yet`);
        return;
      }
      let stop = false;
      process.once('SIGINT', () => { stop = true; });
      process.once('SIGTERM', () => { stop = true; });
      while (!stop) {
        await new Promise((r) => setTimeout(r, o.poll));
        if (stop) break;
        try {
          print(await fetchAll());
        } catch (e) {
          // A restarted `npm start` serves the receiver on a new port and rewrites the join file: re-read it.
          let moved: string | undefined;
          try {
            const now = resolveSettings(g).receiverUrl;
            if (now && now !== base) moved = now;
          } catch { /* the join file is being rewritten: next time */ }
          if (moved) {
            out.note(`(${(e as Error).message}; the join file now names the receiver ${moved}: following it there)`);
            base = moved;
            // Cursors are the old receiver's: page again from the start; what was printed is not printed again.
            cursor = undefined;
          } else out.note(`(${(e as Error).message}; retrying)`);
        }
      }
    });
}

/** The receiver's export route (hosts/receiver/export.ts) streamed to stdout or a file. */
async function exportReadings(base: string, deviceArg: string | undefined,
  o: { format?: string; all?: boolean; since?: string; until?: string; latest?: number; newestFirst?: boolean; output?: string; follow?: boolean }): Promise<void> {
  if (o.follow) throw new CliError(EXIT.usage, 'bad-flags', '--follow pages live readings; an export (--format, --since, --until, --latest, --all) is one download');
  if (o.all && deviceArg !== undefined) throw new CliError(EXIT.usage, 'bad-flags', 'give a device or --all, not both');
  if (!o.all && deviceArg === undefined) throw new CliError(EXIT.usage, 'missing-device', 'name a device address, or --all for every device');
  const format = o.format ?? 'csv';
  if (!['csv', 'jsonl', 'json'].includes(format)) throw new CliError(EXIT.usage, 'bad-format', `--format must be csv, jsonl or json, not ${JSON.stringify(format)}`);
  const q = new URLSearchParams({ format });
  if (o.since !== undefined) q.set('since', o.since);
  if (o.until !== undefined) q.set('until', o.until);
  if (o.latest !== undefined) q.set('latest', String(o.latest));
  if (o.newestFirst) q.set('order', 'desc');
  const url = o.all ? `${base}/v1/readings?${q}` : `${base}/v1/devices/${parseDevice(deviceArg!).toLowerCase()}/readings?${q}`;
  const headers: Record<string, string> = {};
  if (process.env.IOTKX_RECEIVER_TOKEN) headers.authorization = `Bearer ${process.env.IOTKX_RECEIVER_TOKEN}`;
  let res: Response;
  try {
    res = await fetch(url, { headers });
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause?.code;
    throw serviceError('unreachable', `receiver API unreachable at ${new URL(url).origin}: ${cause ?? (e as Error).message}`, 'is the receiver running? (`npm start`, or pass --receiver-url)');
  }
  if (!res.ok || !res.body) {
    let body: any;
    try { body = await res.json(); } catch { body = undefined; }
    if (res.status === 404) throw serviceError('unknown-device', `the receiver knows no device ${deviceArg}`, 'is it enrolled to this receiver? `iotkx status ' + deviceArg + '`');
    if (res.status === 400) throw new CliError(EXIT.usage, String(body?.error ?? 'bad-request'), String(body?.message ?? 'the receiver refused the export query'));
    throw serviceError(String(body?.error ?? res.status), `receiver API ${url}: ${res.status}${body?.message ? `: ${body.message}` : ''}`, res.status === 401 ? 'set IOTKX_RECEIVER_TOKEN' : undefined);
  }
  const sink = o.output ? createWriteStream(o.output) : process.stdout;
  await pipeline(Readable.fromWeb(res.body as any), sink, { end: !!o.output });
}

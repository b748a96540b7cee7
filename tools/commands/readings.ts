/**
 * `iotkx readings <device>`: the device's decrypted readings from the receiver API (§9), oldest first,
 * as a table or (--json) one JSON object a line; --follow keeps polling for new ones until Ctrl-C.
 */
import type { Command } from 'commander';
import { need, Out, resolveSettings, type GlobalOpts } from '../context.js';
import { serviceError } from '../errors.js';
import { readingsPage, type Reading } from '../receiver-api.js';
import { intArg } from './pair.js';
import { parseDevice } from './status.js';

export function registerReadings(program: Command): void {
  program.command('readings')
    .argument('<device>', 'device address')
    .summary('decrypted readings of a device (table, or JSON lines with --json)')
    .description('Prints the readings the receiver decrypted for <device>, in (epoch, seq) order. --json prints one JSON object per line ({epoch, seq, values, receivedAt}); --follow keeps printing new ones; when the receiver stops answering it re-reads the join file, so it follows a restarted `npm start` to its new port.')
    .option('-f, --follow', 'keep polling for new readings until Ctrl-C')
    .option('--last <n>', 'only the last n readings (before following)', intArg(1))
    .option('--after <cursor>', 'start after this cursor (as returned in `next`)')
    .option('--poll <ms>', 'poll interval with --follow', intArg(100), 2000)
    .action(async (deviceArg: string, o: { follow?: boolean; last?: number; after?: string; poll: number }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOpts;
      const out = new Out(!!g.json);
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
          const vals = Object.entries(r.values).map(([k, v]) => (k === 't' ? `t=${new Date(Number(v) * 1000).toISOString().slice(11, 19)}` : `${k}=${v}`)).join('  ');
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

import { execSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { claimDataDir, DATA_DIR_MARKER, DataDirError } from '../../hosts/data-dir.js';
import { until } from '../helpers/until.js';

// npm start's data directory: never wipe what iotkx did not make, one system per directory, and --keep
// resumes a run (chain, contract, receiver keys and readings, devices) instead of starting from nothing.
const ROOT = path.resolve(__dirname, '../..');
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'iotkx-datadir-'));

describe('claimDataDir', () => {
  test('a non-empty directory iotkx did not make is refused and left untouched', () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'thesis.tex'), 'years of work');
    fs.mkdirSync(path.join(dir, '.git'));
    expect(() => claimDataDir(dir)).toThrow(/not empty and was not made by iotkx/);
    expect(fs.readdirSync(dir).sort()).toEqual(['.git', 'thesis.tex']);
    expect(fs.readFileSync(path.join(dir, 'thesis.tex'), 'utf8')).toBe('years of work');
  });

  test('a run directory from before the marker (only iotkx\'s own files) is adopted and wiped', () => {
    const dir = tmp();
    for (const f of ['system.json', 'deployment.json', 'relay.db', 'relay.db-wal', 'operator.key']) fs.writeFileSync(path.join(dir, f), '{}');
    fs.mkdirSync(path.join(dir, 'receiver'));
    const c = claimDataDir(dir);
    expect(c.wiped).toEqual(['deployment.json', 'operator.key', 'receiver', 'relay.db', 'relay.db-wal', 'system.json']);
    c.release();
  });

  test('a file is not a data directory', () => {
    const file = path.join(tmp(), 'f');
    fs.writeFileSync(file, 'x');
    expect(() => claimDataDir(file)).toThrow(DataDirError);
    expect(fs.readFileSync(file, 'utf8')).toBe('x');
  });

  test('a new directory gets the marker; a marked one is wiped and says what went, except with keep', () => {
    const dir = path.join(tmp(), 'run');
    const first = claimDataDir(dir);
    expect(first.wiped).toEqual([]);
    expect(fs.existsSync(path.join(dir, DATA_DIR_MARKER))).toBe(true);
    fs.writeFileSync(path.join(dir, 'relay.db'), 'old');
    fs.mkdirSync(path.join(dir, 'devices'));
    first.release();

    const kept = claimDataDir(dir, { keep: true });
    expect(kept.resumed).toBe(true);
    expect(kept.wiped).toEqual([]);
    expect(fs.existsSync(path.join(dir, 'relay.db'))).toBe(true);
    kept.release();

    const again = claimDataDir(dir);
    expect(again.wiped).toEqual(['devices', 'relay.db']);
    expect(fs.readdirSync(dir).sort()).toEqual([DATA_DIR_MARKER, 'lock']);
    again.release();
    expect(fs.existsSync(path.join(dir, 'lock'))).toBe(false);
  });

  test('a live process holding the lock is refused by pid; a dead one\'s lock is taken over', async () => {
    const dir = path.join(tmp(), 'run');
    claimDataDir(dir).release();
    fs.writeFileSync(path.join(dir, 'relay.db'), 'in use');
    const holder = spawn('sleep', ['30']);
    try {
      fs.writeFileSync(path.join(dir, 'lock'), `${holder.pid}\n`);
      expect(() => claimDataDir(dir)).toThrow(`another iotkx system (pid ${holder.pid}) is using ${dir}; stop it or pass --data-dir`);
      expect(fs.readFileSync(path.join(dir, 'relay.db'), 'utf8')).toBe('in use');
    } finally {
      holder.kill('SIGKILL');
      await new Promise((r) => holder.once('exit', r));
    }
    const taken = claimDataDir(dir);
    expect(fs.readFileSync(path.join(dir, 'lock'), 'utf8').trim()).toBe(String(process.pid));
    taken.release();
  });
});

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function npmStart(args: string[], opts: { ownGroup?: boolean } = {}): Started {
  // ownGroup: a process group of its own, so a test can send SIGINT to the whole group as a terminal's Ctrl-C does.
  const child = spawn(path.join(ROOT, 'node_modules/.bin/tsx'), ['hosts/start.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: opts.ownGroup });
  let out = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { out += d; });
  return { child, output: () => out, exited: new Promise((r) => child.once('exit', (code) => r(code))) };
}

async function stop(s: Started): Promise<number | null> {
  if (s.child.exitCode === null) s.child.kill('SIGINT');
  return s.exited;
}

const readingsOf = async (receiverUrl: string, device: string) => {
  const res = await fetch(`${receiverUrl}/v1/devices/${device}/readings?limit=1000`);
  return res.status === 200 ? ((await res.json()) as any).readings as any[] : [];
};

describe('npm start and its data directory (spawned as a user runs it)', () => {
  jest.setTimeout(240_000);

  test('flags without the -- and unknown flags get a usage message, not a stack trace; --help lists every flag', async () => {
    for (const args of [['2'], ['--device', '2']]) {
      const s = npmStart(args);
      expect(await s.exited).toBe(2);
      expect(s.output()).toContain('flags go after --, e.g. npm start -- --devices 2');
      expect(s.output()).not.toMatch(/\n\s+at /);
    }
    const h = npmStart(['--help']);
    expect(await h.exited).toBe(0);
    for (const flag of ['--devices', '--interval', '--block-time', '--data-dir', '--keep', '--rpc-url', '--relay-port', '--relay-host', '--receiver-port', '--mqtt', '--confirmations', '--idle-depth0-after']) {
      expect(h.output()).toContain(flag);
    }
  });

  test('--data-dir on a foreign non-empty directory exits with a clear message and deletes nothing', async () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'keep me');
    const s = npmStart(['--devices', '0', '--data-dir', dir]);
    expect(await s.exited).not.toBe(0);
    expect(s.output()).toContain('not empty and was not made by iotkx');
    expect(fs.readdirSync(dir)).toEqual(['notes.txt']);
  });

  for (const [when, marker] of [['after the chain is up', 'chain: anvil'], ['while devices are paired', 'receiver: http']] as const) {
    test(`Ctrl-C to the whole process group ${when}: exit 0, the lock released, no anvil left behind`, async () => {
      const dir = path.join(tmp(), 'run');
      const s = npmStart(['--devices', '2', '--data-dir', dir], { ownGroup: true });
      try {
        await until('start-up under way', () => s.output().includes(marker), 150_000, 20);
        process.kill(-s.child.pid!, 'SIGINT'); // the terminal's Ctrl-C: anvil and the workers get it too
        const code = await Promise.race([s.exited, new Promise((r) => setTimeout(() => r('hung'), 60_000))]);
        expect([code, s.output()]).toEqual([0, expect.stringContaining('stopped.')]);
        expect(fs.existsSync(path.join(dir, 'lock'))).toBe(false);
        const left = execSync('ps -eo args', { encoding: 'utf8' }).split('\n').filter((l) => l.includes(dir));
        expect(left).toEqual([]);
      } finally {
        if (s.child.exitCode === null) { try { process.kill(-s.child.pid!, 'SIGKILL'); } catch { /* gone */ } }
      }
    });
  }

  test('--keep after a run without it resumes (every run saves its chain)', async () => {
    const dir = path.join(tmp(), 'run');
    const first = npmStart(['--devices', '1', '--interval', '1', '--data-dir', dir]);
    let second: Started | undefined;
    try {
      const info = await until('system.json', async () => {
        const f = path.join(dir, 'system.json');
        return fs.existsSync(f) ? JSON.parse(fs.readFileSync(f, 'utf8')) : undefined;
      }, 150_000);
      await until('a reading', async () => (await readingsOf(info.receiverUrl, info.devices[0])).length >= 1, 90_000);
      expect(await stop(first)).toBe(0);
      const joinFile = path.join(dir, 'system.json');
      const written = fs.statSync(joinFile).mtimeMs;
      second = npmStart(['--devices', '1', '--data-dir', dir, '--keep']);
      const again = await until('system.json rewritten', async () =>
        fs.statSync(joinFile).mtimeMs > written ? JSON.parse(fs.readFileSync(joinFile, 'utf8')) : undefined, 150_000);
      expect(again.contract).toBe(info.contract);
      expect(again.devices).toEqual(info.devices);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- first ---\n${first.output()}\n--- second ---\n${second?.output()}`);
    } finally {
      await stop(first);
      if (second) await stop(second);
    }
  });

  test('a second start on a running system is refused; --keep resumes chain, receiver and devices', async () => {
    const dir = path.join(tmp(), 'run');
    const first = npmStart(['--devices', '1', '--interval', '1', '--data-dir', dir, '--keep']);
    let second: Started | undefined;
    let third: Started | undefined;
    try {
      const info = await until('system.json', async () => {
        const f = path.join(dir, 'system.json');
        return fs.existsSync(f) ? JSON.parse(fs.readFileSync(f, 'utf8')) : undefined;
      }, 90_000);
      const device = info.devices[0] as string;
      const before = await until('two readings', async () => {
        const r = await readingsOf(info.receiverUrl, device);
        return r.length >= 2 ? r : undefined;
      }, 90_000);

      // A second system on the same directory: refused by pid, the running one untouched.
      // (tsx runs the program in a child process of its own: the lock holds that process's pid.)
      const holder = Number(fs.readFileSync(path.join(dir, 'lock'), 'utf8'));
      second = npmStart(['--devices', '1', '--data-dir', dir]);
      expect(await second.exited).not.toBe(0);
      expect(second.output()).toContain(`another iotkx system (pid ${holder}) is using ${dir}; stop it or pass --data-dir`);
      expect(JSON.parse(fs.readFileSync(path.join(dir, 'system.json'), 'utf8'))).toEqual(info);
      expect((await readingsOf(info.receiverUrl, device)).length).toBeGreaterThanOrEqual(before.length);

      expect(await stop(first)).toBe(0);
      expect(fs.existsSync(path.join(dir, 'lock'))).toBe(false);

      // Resume: same contract and device, the old readings still there and new ones arriving in the same epoch
      // with higher seqs (no seq reuse across the restart).
      const joinFile = path.join(dir, 'system.json');
      const written = fs.statSync(joinFile).mtimeMs;
      third = npmStart(['--devices', '1', '--interval', '1', '--data-dir', dir, '--keep']);
      const again = await until('system.json rewritten', async () =>
        fs.statSync(joinFile).mtimeMs > written ? JSON.parse(fs.readFileSync(joinFile, 'utf8')) : undefined, 90_000);
      expect(third.output()).toContain('resuming the previous run');
      expect(third.output()).not.toContain('removed the previous run');
      expect(again.contract).toBe(info.contract);
      expect(again.devices).toEqual(info.devices);
      expect(again.relayUrl).toBe(info.relayUrl);
      const kept = await readingsOf(again.receiverUrl, device);
      expect(kept.length).toBeGreaterThanOrEqual(before.length);
      const lastSeq = BigInt(kept.at(-1).seq);
      const after = await until('a reading after the restart', async () => {
        const r = await readingsOf(again.receiverUrl, device);
        return r.some((x) => BigInt(x.seq) > lastSeq) ? r : undefined;
      }, 90_000);
      const seqs = after.map((r) => `${r.epoch}:${r.seq}`);
      expect(new Set(seqs).size).toBe(seqs.length);
      expect(third.output()).toContain('kept from the previous run');
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- first ---\n${first.output()}\n--- second ---\n${second?.output()}\n--- third ---\n${third?.output()}`);
    } finally {
      await stop(first);
      if (third) expect(await stop(third)).toBe(0);
    }
  });
});

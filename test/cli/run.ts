// Drives the `iotkx` CLI as a user would: the package's bin (tools/iotkx.js) in a child process, in a
// scratch working directory, with no IOTKX_* variables inherited from the test runner.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export const ROOT = path.resolve(__dirname, '../..');
export const BIN = path.join(ROOT, 'tools/iotkx.js');

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as one JSON value (undefined if it is not). */
  json: any;
}

export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('IOTKX_') && k !== 'MODDABLE' && k !== 'IDF_PATH') env[k] = v;
  for (const [k, v] of Object.entries(extra)) if (v === undefined) delete env[k]; else env[k] = v;
  return env;
}

export function iotkx(args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: opts.cwd, env: opts.env ?? cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`iotkx ${args.join(' ')} timed out\n${stderr}`)); }, opts.timeoutMs ?? 120_000);
    child.once('exit', (code) => {
      clearTimeout(t);
      let json: any;
      try { json = JSON.parse(stdout); } catch { json = undefined; }
      resolve({ code, stdout, stderr, json });
    });
  });
}

export interface Background {
  child: ChildProcess;
  output(): string;
  /** Resolves with the first stdout line matching `test`. */
  line(test: (l: string) => boolean, ms: number): Promise<string>;
  /** SIGINT, then SIGKILL after `ms`; resolves with the exit code. */
  stop(ms?: number): Promise<number | null>;
}

export function background(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }): Background {
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  let partial = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d;
    partial += d;
    let i: number;
    while ((i = partial.indexOf('\n')) >= 0) {
      lines.push(partial.slice(0, i));
      partial = partial.slice(i + 1);
    }
    for (const w of waiters.splice(0)) w();
  });
  child.stderr!.on('data', (d: Buffer) => { err += d; });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => { r(code); for (const w of waiters.splice(0)) w(); }));
  return {
    child,
    output: () => `${out}\n--- stderr ---\n${err}`,
    async line(test, ms) {
      const end = Date.now() + ms;
      let seen = 0;
      for (;;) {
        for (; seen < lines.length; seen++) if (test(lines[seen])) return lines[seen];
        if (child.exitCode !== null) throw new Error(`process exited (${child.exitCode}) before the expected line:\n${out}\n${err}`);
        if (Date.now() > end) throw new Error(`timed out waiting for a line:\n${out}\n${err}`);
        await new Promise<void>((r) => { waiters.push(r); setTimeout(r, 500); });
      }
    },
    async stop(ms = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGINT');
      const t = setTimeout(() => child.kill('SIGKILL'), ms);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

export { until } from '../helpers/until.js';

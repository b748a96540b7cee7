/**
 * The firmware's lin build (a debug mc.so, hosts/moddable/build.ts) running in the SDK's own simulator, mcsim, under
 * a private Xvfb: Moddable's XS and runtime, headless. Its trace, exceptions and instrument samples arrive over the
 * xsbug protocol (hosts/moddable/xsbug.ts); its console is the desktop board's loopback TCP port, announced by
 * trace. Each device has its own folder: mcsim's working directory (the lin `preference` file, i.e. its NVS) and
 * its HOME (mcsim copies mc.so into its config folder), so devices never share state.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Sdk } from './build.js';
import { XsbugListener } from './xsbug.js';

/** One Xvfb for the process; displays are picked by Xvfb itself (-displayfd), so parallel test files never clash. */
let xvfb: Promise<{ display: string; child: ChildProcess }> | undefined;

export function startXvfb(): Promise<{ display: string; child: ChildProcess }> {
  return (xvfb ??= new Promise((resolve, reject) => {
    const child = spawn('Xvfb', ['-displayfd', '3', '-nolisten', 'tcp', '-screen', '0', '640x480x24'], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr!.on('data', (d) => { err += d; });
    child.stdio[3]!.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve({ display: `:${out.trim()}`, child });
    });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`Xvfb exited (${code}): ${err.slice(-500)}`)));
    child.unref();
  }));
}

export async function stopXvfb(): Promise<void> {
  if (!xvfb) return;
  const { child } = await xvfb.catch(() => ({ child: undefined }));
  xvfb = undefined;
  if (child && child.exitCode === null) {
    await new Promise<void>((r) => { child.once('exit', () => r()); child.kill('SIGTERM'); });
  }
}

async function freeLoopbackPort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => { const p = (srv.address() as { port: number }).port; srv.close(() => resolve(p)); });
  });
}

export interface McsimOptions {
  sdk: Sdk;
  /** The debug mc.so. */
  library: string;
  /** The device's folder (NVS file, HOME). */
  dir: string;
}

export class McsimDevice {
  xsbug!: XsbugListener;
  private child?: ChildProcess;
  /** stderr/stdout of mcsim (GTK warnings, crashes). */
  output = '';
  /** Lifetimes: one per start(). */
  boots = 0;

  /** The console port, the same in every lifetime (as a board's UART is), so a client can reconnect after a reboot. */
  private consolePort = 0;
  /** The firmware asked for a reboot (iotkx/restart exits on desktops): power it on again, as the chip would. */
  private stopping = false;

  private constructor(private readonly opts: McsimOptions) {}

  static async start(opts: McsimOptions): Promise<McsimDevice> {
    const d = new McsimDevice(opts);
    d.consolePort = await freeLoopbackPort();
    await d.powerOn();
    return d;
  }

  get running(): boolean { return !!this.child && this.child.exitCode === null && this.child.signalCode === null; }

  /** The log of the current lifetime. */
  get log(): string { return this.xsbug.log; }

  /** The console URL the desktop board announced (`iotkx pair --port <url>`). */
  async consoleUrl(timeoutMs = 60_000): Promise<string> {
    return this.xsbug.waitFor('the console port', () => /console: (tcp:\/\/127\.0\.0\.1:[0-9]+)/.exec(this.xsbug.log)?.[1], timeoutMs);
  }

  async powerOn(): Promise<void> {
    const { sdk, library, dir } = this.opts;
    const { display } = await startXvfb();
    this.xsbug = await XsbugListener.start();
    const config = path.join(dir, 'config');
    fs.mkdirSync(path.join(config, 'tech.moddable.mcsim'), { recursive: true });
    this.output = '';
    this.boots++;
    const child = spawn(path.join(sdk.bin, 'mcsim'), [library], {
      cwd: dir,
      env: {
        ...sdk.env, DISPLAY: display, HOME: dir, XDG_CONFIG_HOME: config, XSBUG_HOST: '127.0.0.1', XSBUG_PORT: String(this.xsbug.port),
        IOTKX_CONSOLE_PORT: String(this.consolePort), NO_AT_BRIDGE: '1', GTK_A11Y: 'none',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d) => { this.output += d; });
    child.stderr!.on('data', (d) => { this.output += d; });
    child.once('exit', (code, signal) => {
      this.output += `\n# mcsim exited (${signal ?? `code ${code}`})\n`;
      if (code === 0 && !this.stopping) this.rebooting = this.xsbug.close().then(() => this.powerOn());
    });
    this.child = child;
    await this.xsbug.waitFor('the firmware to connect to xsbug', () => this.xsbug.logins > 0 || (!this.running && 'exited'), 60_000);
    if (!this.running) throw new Error(`mcsim exited at start:\n${this.output}`);
  }

  /** Wait for the firmware to exit by itself (the `reboot` command: iotkx/restart exits on desktops). */
  async exited(timeoutMs = 30_000): Promise<void> {
    const c = this.child;
    if (!c || !this.running) return;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('mcsim did not exit')), timeoutMs);
      c.once('exit', () => { clearTimeout(t); resolve(); });
    });
  }

  /** Set while a reboot the firmware asked for is under way. */
  rebooting: Promise<void> | undefined;

  /** SIGKILL: a power cut. */
  async kill(): Promise<void> {
    this.stopping = true;
    await this.rebooting?.catch(() => undefined);
    const c = this.child;
    if (c && this.running) await new Promise<void>((r) => { c.once('exit', () => r()); c.kill('SIGKILL'); });
    await this.xsbug?.close();
    this.stopping = false;
  }

  async restart(): Promise<void> {
    await this.kill();
    await this.powerOn();
  }
}

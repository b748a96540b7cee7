/**
 * A console connection that survives the device restarting (after `reboot`, or a USB-serial reset): a
 * request that finds the connection closed reopens it, for the read-only commands that may be repeated.
 */
import { CliError, EXIT } from './errors.js';
import { ConsoleClient, ConsoleError, readIdentity, type ConsoleOptions, type Identity } from './console-client.js';

/** Console problems are exit 3, except the device's own `already-provisioned` refusal (exit 5). */
export function consoleFailure(e: unknown): never {
  if (e instanceof ConsoleError) {
    if (e.code === 'device-error' && e.deviceCode === 'already-provisioned') {
      throw new CliError(EXIT.refused, 'already-provisioned', e.message, 're-provisioning needs a factory reset (`iotkx factory-reset --port …`); a pairing that stopped half-way continues with `iotkx pair --resume`');
    }
    if (e.code === 'bad-port') throw new CliError(EXIT.usage, 'bad-port', e.message, 'simulator consoles are tcp://host:port (`iotkx sim` prints them); boards are serial ports (`iotkx devices` lists them)');
    throw new CliError(EXIT.device, e.code === 'device-error' ? (e.deviceCode ?? 'device-error') : e.code, e.message);
  }
  throw e;
}

export class ConsoleSession {
  private client: ConsoleClient | undefined;
  constructor(readonly port: string, private readonly opts: ConsoleOptions = {}) {}

  async open(): Promise<ConsoleClient> {
    if (!this.client) this.client = await ConsoleClient.open(this.port, this.opts).catch(consoleFailure);
    return this.client;
  }

  /** Sends a command; with `reconnect`, a closed or refused connection is reopened once (device restarting). */
  async request(cmd: string, fields: Record<string, unknown> = {}, o: { reconnect?: boolean; timeoutMs?: number } = {}): Promise<Record<string, unknown>> {
    try {
      return await (await this.open()).request(cmd, fields, { timeoutMs: o.timeoutMs });
    } catch (e) {
      const retry = o.reconnect && (e instanceof ConsoleError ? e.code === 'closed' || e.code === 'connect-failed' : e instanceof CliError && (e.code === 'closed' || e.code === 'connect-failed'));
      if (!retry) consoleFailure(e);
      this.close();
      await new Promise((r) => setTimeout(r, 500));
      return (await this.open()).request(cmd, fields, { timeoutMs: o.timeoutMs }).catch(consoleFailure);
    }
  }

  async identity(): Promise<Identity> {
    return readIdentity(await this.open()).catch(consoleFailure);
  }

  close(): void {
    this.client?.close();
    this.client = undefined;
  }
}

/**
 * `iotkx pair`: PROTOCOL.md §5.2 from the technician's side, in an order that never leaves the chain
 * half-done: every check that can fail (console, chain, contract, receiver key record, operator authorised,
 * operator funds, enroll dry-run) runs BEFORE the device is provisioned; the device is enrolled only after
 * it took its configuration; then funded; then we wait for `active`.
 * If enroll or funding fails after provisioning (the chain went away mid-way), nothing is lost: the device
 * waits for its enrolment, and `iotkx pair --port … --resume` enrolls and funds it later.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { getAddress, parseGwei, type Address } from 'viem';
import {
  checkContract, connectChain, eth, feePlan, isOperator, measureBlockTime, readChannel, receiverKeyVersion,
  sendContract, sendValue, signer, simulate,
} from '../chain.js';
import { confirm, need, Out, readKeyHex, resolveSettings, type GlobalOpts } from '../context.js';
import { chainError, CliError, EXIT, refused, usageError } from '../errors.js';
import { renderLabel } from '../label.js';
import { tcpSuggestion } from '../console-client.js';
import { ConsoleSession } from '../session.js';

/**
 * Why a provisioned device is not this system's (empty: nothing says so). The console's status and the
 * chain tell: a device that offered epoch E, or signed N transactions, on its chain has a record of it on
 * that chain; this chain has none (not enrolled to this receiver, a lower epoch, fewer transactions). And a
 * device that cannot reach its relay while this system's relay answers was given another relay. A chain or
 * console that does not answer proves nothing: the ordinary checks report it later.
 */
async function provisionedElsewhere(dev: ConsoleSession, t: { rpcUrl: string; chainId?: number; contract: Address; receiver: Address; device: Address; relayBase?: string }): Promise<string[] & { chainId?: number }> {
  const reasons: string[] & { chainId?: number } = [];
  let st: Record<string, unknown>;
  let c;
  try {
    st = await dev.request('status');
    c = await connectChain(t.rpcUrl, t.chainId);
  } catch {
    return reasons;
  }
  reasons.chainId = c.chainId;
  let ch;
  let txCount: number;
  try {
    ch = await readChannel(c, t.contract, t.device, t.receiver);
    txCount = await c.pc.getTransactionCount({ address: t.device });
  } catch {
    return reasons;
  }
  if (ch.enrolled) return reasons; // this system enrolled it: it is ours (an interrupted pairing, or a paired device)
  const num = (v: unknown) => (typeof v === 'string' && /^[0-9]+$/.test(v) ? BigInt(v) : typeof v === 'number' ? BigInt(v) : 0n);
  const deviceEpoch = [st.epoch, st.pendingEpoch].map(num).reduce((a, b) => (a > b ? a : b), 0n);
  if (deviceEpoch > ch.epoch) reasons.push(`it reports key epoch ${deviceEpoch}, this chain has ${ch.epoch === 0n ? 'no offer from it to this receiver' : `epoch ${ch.epoch}`}`);
  const nonce = num(st.nextNonce);
  if (nonce > BigInt(txCount)) reasons.push(`it has signed ${nonce} transaction(s), this chain knows ${txCount} from it`);
  if (st.relayReachable === false && t.relayBase) {
    const ours = await fetch(`${t.relayBase}/healthz`, { signal: AbortSignal.timeout(3000) }).then((r) => r.ok, () => false);
    if (ours) reasons.push(`it cannot reach its relay, while this system's relay (${t.relayBase}) answers`);
  }
  return reasons;
}

export const intArg = (min: number, max = Number.MAX_SAFE_INTEGER) => (v: string) => {
  if (!/^[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) throw new InvalidArgumentError(`expected an integer in [${min}, ${max}]`);
  return Number(v);
};
const weiArg = (v: string) => {
  if (/^[0-9]+$/.test(v)) return BigInt(v);
  const m = /^([0-9]+(?:\.[0-9]+)?)gwei$/i.exec(v);
  if (m) return parseGwei(m[1]);
  throw new InvalidArgumentError('expected wei (e.g. 2000000000) or gwei (e.g. 2gwei)');
};
const secondsArg = (v: string) => {
  const n = Number(v);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(v) || n <= 0 || n > 3600) throw new InvalidArgumentError('expected seconds in (0, 3600]');
  return n;
};

interface PairOpts extends GlobalOpts {
  port: string;
  yes?: boolean;
  resume?: boolean;
  interval: number;
  wifiSsid?: string;
  wifiPasswordFile?: string;
  exchanges: number;
  offerGas?: number;
  maxFeePerGas?: bigint;
  maxPriorityFeePerGas?: bigint;
  maxTxPerDay: number;
  blockTime?: number;
  backoffMax: number;
  rotateReadings: number;
  rotateAge: number;
  deviceRelayUrl?: string;
  wait: boolean;
  reboot: boolean;
  timeout: number;
  labelDir: string;
  consoleTimeout: number;
}

export function registerPair(program: Command): void {
  program.command('pair')
    .summary('provision a device over its console, enroll it on chain, fund it, wait until it is active')
    .description(`Pairs one device (PROTOCOL.md §5.2):
  1. reads its identity over the console (§6) and shows its address (confirm, or --yes);
  2. checks the chain, the contract, the receiver's key record, that the operator is authorised and can pay;
  3. provisions it (relay URL, chain id, contract, receiver, interval, Wi-Fi, spending caps);
  4. only then enrolls it on chain (operator key) and funds it with N × offerGas × maxFeePerGas;
  5. waits until it reports \`active\` (its first key exchange done) and prints a label with a QR code.
An already-provisioned device is refused (exit 5) and nothing is sent on chain. --resume continues a pairing
that stopped after step 3 (enrolls and funds a provisioned device).`)
    .requiredOption('-p, --port <port>', 'console: a serial port (/dev/ttyUSB0, COM3) or tcp://host:port (simulator)')
    .option('-y, --yes', 'do not ask for confirmation')
    .option('--resume', 'the device is already provisioned by an interrupted pairing: only enroll, fund and wait')
    .option('--interval <seconds>', 'seconds between readings', intArg(1, 604_800), 60)
    .option('--wifi-ssid <ssid>', 'Wi-Fi network of the device (password from IOTKX_WIFI_PASSWORD or --wifi-password-file)')
    .option('--wifi-password-file <file>', 'file holding the Wi-Fi password')
    .option('--exchanges <n>', 'fund the device for this many key exchanges', intArg(1, 100_000), 20)
    .option('--offer-gas <gas>', 'gas limit of an offer (default 120000)', intArg(21_000, 30_000_000))
    .option('--max-fee-per-gas <wei|Ngwei>', 'fee cap (default 2 × base fee + tip cap)', weiArg)
    .option('--max-priority-fee-per-gas <wei|Ngwei>', 'tip cap (default max(node suggestion, 1 gwei))', weiArg)
    .option('--max-tx-per-day <n>', 'transactions the device may sign a day', intArg(1, 10_000), 24)
    .option('--block-time <seconds>', 'seconds per block (default: measured from the chain)', secondsArg)
    .option('--backoff-max <seconds>', 'ceiling of the offer back-off', intArg(1, 2_592_000), 3600)
    .option('--rotate-readings <n>', 'rotate the key after this many readings (0 = never)', intArg(0), 0)
    .option('--rotate-age <seconds>', 'rotate the key after this long (0 = never)', intArg(0, 31_622_400), 0)
    .option('--device-relay-url <url>', 'relay JSON-RPC URL as the DEVICE reaches it (default <relay>/rpc)')
    .option('--no-wait', 'do not wait for the device to reach active')
    .option('--no-reboot', 'do not reboot the device after funding (it then notices its enrolment at its next poll, ≤ 30 s)')
    .option('--timeout <seconds>', 'how long to wait for active', intArg(1), 300)
    .option('--label-dir <dir>', 'where the label PNG and SVG go', '.iotkx/labels')
    .option('--console-timeout <ms>', 'reply deadline of one console request', intArg(100), 5000)
    .action(async (_o, cmd: Command) => pair(cmd.optsWithGlobals() as PairOpts));
}

async function pair(o: PairOpts): Promise<void> {
  const out = new Out(!!o.json);
  const s = resolveSettings(o);
  // Everything that needs no device or chain first: missing configuration is a usage error.
  const rpcUrl = need(s, 'rpcUrl');
  const contract = need(s, 'contract');
  const receiver = need(s, 'receiverAddress');
  const relayBase = o.deviceRelayUrl ? undefined : need(s, 'relayUrl');
  const deviceRelayUrl = o.deviceRelayUrl ?? `${relayBase}/rpc`;
  if (!/^https?:\/\/[^\s/]+(\/\S*)?$/.test(deviceRelayUrl)) throw usageError(`--device-relay-url ${deviceRelayUrl} is not an http(s) URL`);
  const operatorKey = readKeyHex('IOTKX_OPERATOR_KEY', s.operatorKeyFile, 'operator');
  let network: { ssid: string; password: string } | undefined;
  if (o.wifiSsid !== undefined) {
    let password = process.env.IOTKX_WIFI_PASSWORD ?? '';
    if (o.wifiPasswordFile) {
      if (!existsSync(o.wifiPasswordFile)) throw usageError(`Wi-Fi password file ${o.wifiPasswordFile} does not exist`);
      password = (await import('node:fs')).readFileSync(o.wifiPasswordFile, 'utf8').replace(/\r?\n$/, '');
    }
    network = { ssid: o.wifiSsid, password };
  }
  const isSerial = !o.port.startsWith('tcp://') && !tcpSuggestion(o.port);
  if (isSerial && /^https?:\/\/(127\.|localhost|\[::1\])/.test(deviceRelayUrl)) {
    out.note(`warning: the device will reach the relay at ${deviceRelayUrl}, a loopback address: a board on Wi-Fi cannot. Pass --device-relay-url http://<this machine's LAN address>:<port>/rpc`);
  }

  const dev = new ConsoleSession(o.port, { timeoutMs: o.consoleTimeout });
  try {
    // 1. Identity (§6).
    const id = await out.step(`reading identity on ${o.port}`, () => dev.identity());
    const device = getAddress(id.address) as Address;
    out.note(`device ${device} (firmware ${id.firmware}, state ${id.state})`);
    const provisioned = id.state !== 'unprovisioned';
    if (provisioned) {
      // A device provisioned for another system (a restarted `npm start`: a new chain, contract or receiver)
      // can never work here, whatever --resume does: say so, and what to do.
      const elsewhere = await out.step('checking which system the device is provisioned for', () => provisionedElsewhere(dev, {
        rpcUrl, chainId: s.chainId, contract, receiver, device, relayBase: s.relayUrl,
      }));
      if (elsewhere.length) {
        const sim = o.port.startsWith('tcp://');
        throw refused('provisioned-elsewhere',
          `device ${device} is provisioned for another system, not this one (chain ${elsewhere.chainId ?? s.chainId ?? '?'}, contract ${contract}, receiver ${receiver}${s.systemFile ? `, from ${s.systemFile}` : ''}): ${elsewhere.join('; ')}. Nothing sent on chain`,
          sim
            ? `a simulated device from an earlier run: stop \`iotkx sim\` and start it again with \`iotkx sim --fresh\` (new identities), then pair the port it prints; or wipe just this one with \`iotkx factory-reset --port ${o.port} --confirm ${device}\` and pair again`
            : `wipe it with \`iotkx factory-reset --port ${o.port} --confirm ${device}\` (it makes a new identity), then pair it again; revoke the old address on its old system if that still runs`);
      }
    }
    if (provisioned && !o.resume) {
      throw refused('already-provisioned', `device ${device} is already provisioned (state ${id.state}): not pairing it, nothing sent on chain`,
        're-provisioning needs a factory reset (`iotkx factory-reset --port …`); if an earlier `iotkx pair` stopped after provisioning, use --resume');
    }
    if (!provisioned && o.resume) throw usageError(`device ${device} is not provisioned: run pair without --resume`);

    // 2. Chain checks, before anything changes anywhere.
    const c = await out.step(`checking the chain at ${rpcUrl}`, () => connectChain(rpcUrl, s.chainId));
    const op = signer(c, operatorKey);
    const pre = await out.step('checking contract, receiver key record, operator and funds', async () => {
      const ttl = await checkContract(c, contract);
      const rk = await receiverKeyVersion(c, contract, receiver);
      if (rk.version === 0) throw chainError('no-key-record', `receiver ${receiver} has published no key record: the device could not offer`, 'run `iotkx receiver init` (publishes it) or start the receiver');
      const channel = await readChannel(c, contract, device, receiver);
      if (!channel.enrolled) {
        const authorised = op.account.address.toLowerCase() === receiver.toLowerCase() || (await isOperator(c, contract, receiver, op.account.address));
        if (!authorised) throw chainError('not-operator', `${op.account.address} is not an operator of receiver ${receiver}`, `the receiver authorises it with \`iotkx receiver add-operator ${op.account.address}\``);
      }
      const enrollGas = channel.enrolled ? 0n : await simulate(c, contract, op.account.address, 'enroll', [receiver, device]);
      const plan = await feePlan(c, { exchanges: o.exchanges, offerGas: o.offerGas !== undefined ? BigInt(o.offerGas) : undefined, maxFeePerGas: o.maxFeePerGas, maxPriorityFeePerGas: o.maxPriorityFeePerGas });
      const deviceBalance = await c.pc.getBalance({ address: device });
      const topUp = plan.budget > deviceBalance ? plan.budget - deviceBalance : 0n;
      // What the operator pays: the top-up, plus gas for enroll and for the transfer at the fee cap.
      const need = topUp + (enrollGas + (topUp > 0n ? 21_000n : 0n)) * plan.maxFeePerGas;
      const have = await c.pc.getBalance({ address: op.account.address });
      if (have < need) {
        throw chainError('insufficient-funds', `operator ${op.account.address} has ${eth(have)}, pairing needs ${eth(need)} (${o.exchanges} exchanges × ${plan.offerGas} gas × ${plan.maxFeePerGas} wei + enroll and transfer gas): nothing done`,
          'fund the operator account, or lower --exchanges');
      }
      const blockTime = o.blockTime ?? (await measureBlockTime(c)) ?? 2;
      return { ttl, rk, channel, plan, topUp, blockTime, operatorBalance: have };
    });

    const config = {
      relayUrl: deviceRelayUrl, chainId: String(c.chainId), contract, receiver, intervalSec: o.interval,
      ...(network ? { network } : {}),
      maxFeePerGas: pre.plan.maxFeePerGas.toString(), maxPriorityFeePerGas: pre.plan.maxPriorityFeePerGas.toString(),
      offerGas: pre.plan.offerGas.toString(), maxTxPerDay: o.maxTxPerDay, blockTime: pre.blockTime,
      backoffMaxSec: o.backoffMax, rotation: { maxReadings: o.rotateReadings, maxAgeSec: o.rotateAge },
    };
    if (!o.json) {
      out.line(`Pairing device ${device}`);
      out.line(`  receiver   ${receiver} (key record v${pre.rk.version})`);
      out.line(`  chain      ${c.chainId} via ${rpcUrl}, contract ${contract}`);
      out.line(`  relay      ${deviceRelayUrl} (as the device reaches it)`);
      out.line(`  readings   every ${o.interval} s${network ? `, Wi-Fi "${network.ssid}"` : ''}`);
      out.line(`  fees       cap ${pre.plan.maxFeePerGas} wei/gas (tip ${pre.plan.maxPriorityFeePerGas}), offer gas ${pre.plan.offerGas}, ≤ ${o.maxTxPerDay} tx/day`);
      out.line(`  funding    ${eth(pre.topUp)} (${o.exchanges} exchanges; budget ${eth(pre.plan.budget)})`);
    }
    await confirm(`Pair device ${device}? [y/N]`, { yes: o.yes });

    // 3. Provision (§6). Only a device that took its configuration gets enrolled.
    if (!provisioned) {
      await out.step('provisioning', async () => {
        try {
          await dev.request('provision', { config });
        } catch (e) {
          // A lost reply: the device may or may not have stored it. Ask (identity is repeatable).
          if (!(e instanceof CliError && e.code === 'timeout')) throw e;
          const after = await dev.identity();
          if (after.state === 'unprovisioned') throw e;
        }
        const after = await dev.identity();
        if (after.address !== id.address) throw new CliError(EXIT.device, 'device-changed', `the device on ${o.port} changed (now ${getAddress(after.address)}): nothing enrolled`);
        if (after.state === 'unprovisioned') throw new CliError(EXIT.device, 'not-provisioned', 'the device acknowledged provisioning but still reports unprovisioned: nothing enrolled');
      });
    }

    // 4. Enroll, then fund (§5.2 step 3). A failure here leaves a provisioned device that waits: --resume.
    const resumeHint = `the device is provisioned; fix the cause, then \`iotkx pair --port ${o.port} --resume\` enrolls and funds it`;
    const withHint = async <T>(p: Promise<T>) => p.catch((e) => {
      if (e instanceof CliError) throw new CliError(e.exit, e.code, e.message, resumeHint);
      throw e;
    });
    let enrollTx: string | null = null;
    if (!pre.channel.enrolled) enrollTx = await out.step('enrolling on chain', () => withHint(sendContract(c, op, contract, 'enroll', [receiver, device])));
    else out.note('already enrolled: skipping enroll');
    let fundTx: string | null = null;
    if (pre.topUp > 0n) fundTx = await out.step(`funding ${eth(pre.topUp)}`, () => withHint(sendValue(c, op, device, pre.topUp)));
    else out.note('device balance already covers the budget: no funding sent');

    // 5. Wait for active (console status polling).
    let state = (await dev.request('status', {}, { reconnect: true })).state as string;
    if (o.wait && state !== 'active') {
      // The device polls its enrolment every ≤ 30 s; a reboot makes it look now.
      if (o.reboot && (state === 'provisioned')) await dev.request('reboot').catch(() => undefined);
      state = await out.step('waiting for the device to exchange its first key (active)', async (update) => {
        const end = Date.now() + o.timeout * 1000;
        let last: Record<string, unknown> = {};
        while (Date.now() < end) {
          try {
            last = await dev.request('status', {}, { reconnect: true });
            const err = last.lastError as { code?: string } | null | undefined;
            update(`${String(last.state)}${last.pendingEpoch ? `, epoch ${String(last.pendingEpoch)} offered` : ''}${err?.code ? `, last error ${err.code}` : ''}`);
            if (last.state === 'active') return 'active';
            if (last.state === 'revoked') throw new CliError(EXIT.refused, 'revoked', `device ${device} reports revoked`);
          } catch (e) {
            if (e instanceof CliError && e.exit !== EXIT.device) throw e;
            update(`console: ${(e as Error).message}`);
            dev.close();
          }
          await new Promise((r) => setTimeout(r, 1000));
        }
        const err = last.lastError as { code?: string; message?: string } | null | undefined;
        throw new CliError(EXIT.timeout, 'not-active', `device ${device} did not reach active within ${o.timeout} s (state ${String(last.state ?? 'unknown')}${err?.code ? `, last error ${err.code}: ${err.message}` : ''})`,
          'it is enrolled and funded and keeps trying on its own; check with `iotkx status ' + device + '`');
      });
    }

    // 6. Label.
    mkdirSync(o.labelDir, { recursive: true });
    const label = await renderLabel(device, c.chainId, join(o.labelDir, device), { tty: !!process.stdout.isTTY });
    const result = {
      device, publicKey: id.publicKey, firmware: id.firmware, state, receiver, contract, chainId: c.chainId,
      relayUrl: deviceRelayUrl, enrollTx, fundTx, funded: pre.topUp.toString(),
      fees: { maxFeePerGas: pre.plan.maxFeePerGas.toString(), maxPriorityFeePerGas: pre.plan.maxPriorityFeePerGas.toString(), offerGas: pre.plan.offerGas.toString(), exchanges: o.exchanges, budget: pre.plan.budget.toString() },
      label: { png: label.png, svg: label.svg, uri: label.uri },
    };
    out.result(result, () => {
      out.line('');
      out.line(label.terminal);
      out.line(`  ${device}`);
      out.line(`  ${label.uri}`);
      out.line(`label: ${label.png}, ${label.svg}`);
      out.line(`paired: ${device} is ${state}${enrollTx ? ` (enrolled in ${enrollTx})` : ''}`);
    });
  } finally {
    dev.close();
  }
}

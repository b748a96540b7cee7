/**
 * `iotkx receiver init|show|rotate-key|add-operator`: the receiver's keys (hosts/receiver/keys.ts: a 0600
 * JSON file holding the account key r and the encryption keys e by version), its key record on chain
 * (§5.1: EIP-712 ReceiverKey signed with r, setReceiverKey) and its operators (setOperator).
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import type { Address, Hex } from 'viem';
import { addEncryptionKey, initReceiverKeys, readKeyFile, saveKeyFile, type EncKey, type ReceiverKeys } from '../../hosts/receiver/keys.js';
import { ensureRandom } from '../../hosts/receiver/random.js';
import { addressHex } from '../../lib/address.js';
import { hexToBytes, toHex } from '../../lib/bytes.js';
import { receiverKeyDigest, signTyped } from '../../lib/eip712.js';
import { checkContract, connectChain, eth, isOperator, receiverKeyVersion, sendContract, signer, type Chainish } from '../chain.js';
import { DEFAULT_RECEIVER_KEY_FILE, need, Out, readKeyHex, resolveSettings, type GlobalOpts, type Settings } from '../context.js';
import { chainError, refused, usageError } from '../errors.js';
import { parseDevice } from './status.js';

const keyFileOf = (s: Settings) => s.receiverKeyFile ?? DEFAULT_RECEIVER_KEY_FILE;

function load(path: string): ReceiverKeys {
  if (!existsSync(path)) throw usageError(`no receiver key file at ${path}`, 'create one with `iotkx receiver init` (or pass --receiver-key-file)');
  try {
    return readKeyFile(path);
  } catch (e) {
    throw usageError((e as Error).message);
  }
}

async function chainOf(s: Settings): Promise<{ c: Chainish; contract: Address }> {
  const c = await connectChain(need(s, 'rpcUrl'), s.chainId);
  const contract = need(s, 'contract');
  await checkContract(c, contract);
  return { c, contract };
}

/**
 * §5.1 publication without a receiver database: version = on-chain version + 1, written to the key file
 * BEFORE the transaction (as hosts/receiver/keyrecord.ts does), so a crash leaves a labelled, publishable key.
 * The running receiver learns the version from the ReceiverKeySet log.
 */
async function publish(c: Chainish, contract: Address, keys: ReceiverKeys, k: EncKey): Promise<{ version: number; tx: Hex | null }> {
  const current = await receiverKeyVersion(c, contract, addressHex(keys.address) as Address);
  if (current.version > 0 && current.encKey.toLowerCase() === toHex(k.publicKey)) {
    if (k.version !== current.version) { k.version = current.version; saveKeyFile(keys); }
    return { version: current.version, tx: null };
  }
  const version = current.version + 1;
  const s = signer(c, toHex(keys.accountKey));
  const balance = await c.pc.getBalance({ address: s.account.address });
  if (balance === 0n) throw chainError('insufficient-funds', `receiver account ${s.account.address} has no funds to publish its key record`, `send it some ETH, then run \`iotkx receiver init\` again (it publishes what is unpublished)`);
  k.version = version;
  saveKeyFile(keys);
  ensureRandom();
  const sig = toHex(signTyped(receiverKeyDigest({ chainId: BigInt(c.chainId), verifyingContract: hexToBytes(contract) }, { receiver: keys.address, version: BigInt(version), encKey: k.publicKey }), keys.accountKey));
  const tx = await sendContract(c, s, contract, 'setReceiverKey', [toHex(k.publicKey), sig]);
  return { version, tx };
}

function describe(keys: ReceiverKeys, path: string) {
  return { keyFile: path, address: addressHex(keys.address), encKeys: keys.encKeys.map((e) => ({ version: e.version, publicKey: toHex(e.publicKey) })) };
}

export function registerReceiver(program: Command): void {
  const r = program.command('receiver')
    .summary('the receiver\'s keys, key record and operators')
    .description(`The receiver's key file (default ${DEFAULT_RECEIVER_KEY_FILE}, or the join file's receiverKeyFile; --receiver-key-file / IOTKX_RECEIVER_KEY_FILE), created with mode 0600.`);

  r.command('init')
    .summary('create the receiver\'s keys (0600 file) and publish the key record')
    .description('Creates the key file if absent (account key r, encryption key e). With a chain configured, publishes the key record (§5.1) unless --no-publish; run it again after funding the account to publish. Idempotent.')
    .option('--no-publish', 'only create the key file')
    .action(async (o: { publish: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOpts;
      const out = new Out(!!g.json);
      const s = resolveSettings(g);
      const path = keyFileOf(s);
      const existed = existsSync(path);
      let keys: ReceiverKeys;
      try {
        keys = initReceiverKeys(path);
      } catch (e) {
        throw usageError(`${path}: ${(e as Error).message}`);
      }
      const result: Record<string, unknown> = { ...describe(keys, path), created: !existed };
      if (o.publish && s.rpcUrl && s.contract) {
        const { c, contract } = await chainOf(s);
        const pending = [...keys.encKeys].reverse().find((k) => !k.fromEnv) ?? keys.encKeys[0];
        const p = await out.step('publishing the key record', () => publish(c, contract, keys, pending));
        Object.assign(result, { published: p.version, tx: p.tx, encKeys: describe(keys, path).encKeys });
      } else if (o.publish) result.note = 'no chain configured: key record not published';
      out.result(result, () => {
        out.line(`${existed ? 'existing' : 'created'} receiver keys ${path} (mode 0600)`);
        out.line(`  account    ${result.address}`);
        for (const e of keys.encKeys) out.line(`  enc key    v${e.version ?? '- (unpublished)'}  ${toHex(e.publicKey).slice(0, 20)}…`);
        if (result.published !== undefined) out.line(`key record v${result.published} on chain${result.tx ? ` (${result.tx})` : ' (already)'}`);
        if (result.note) out.line(String(result.note));
      });
    });

  r.command('show')
    .summary('the receiver\'s address, keys, on-chain key record, balance and operator')
    .action(async (_o, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOpts;
      const out = new Out(!!g.json);
      const s = resolveSettings(g);
      const path = keyFileOf(s);
      const keys = load(path);
      const result: Record<string, unknown> = describe(keys, path);
      if (s.rpcUrl && s.contract) {
        const { c, contract } = await chainOf(s);
        const address = addressHex(keys.address) as Address;
        const rk = await receiverKeyVersion(c, contract, address);
        const mine = keys.encKeys.find((k) => toHex(k.publicKey) === rk.encKey.toLowerCase());
        result.chain = { chainId: c.chainId, contract, keyRecordVersion: rk.version, keyRecordIsOurs: !!mine, balance: (await c.pc.getBalance({ address })).toString() };
        if (s.operatorKeyFile || process.env.IOTKX_OPERATOR_KEY) {
          const op = signer(c, readKeyHex('IOTKX_OPERATOR_KEY', s.operatorKeyFile, 'operator')).account.address;
          (result.chain as Record<string, unknown>).operator = { address: op, authorised: await isOperator(c, contract, address, op) };
        }
      }
      out.result(result, () => {
        out.line(`receiver ${result.address}  (keys ${path})`);
        for (const e of keys.encKeys) out.line(`  enc key v${e.version ?? '-'}  ${toHex(e.publicKey).slice(0, 20)}…`);
        const ch = result.chain as any;
        if (ch) {
          out.line(`  chain ${ch.chainId}, contract ${ch.contract}: key record v${ch.keyRecordVersion}${ch.keyRecordVersion ? (ch.keyRecordIsOurs ? ' (ours)' : ' (NOT one of our keys)') : ' (none: `iotkx receiver init` publishes it)'}, balance ${eth(BigInt(ch.balance))}`);
          if (ch.operator) out.line(`  operator ${ch.operator.address}: ${ch.operator.authorised ? 'authorised' : 'NOT authorised (`iotkx receiver add-operator`)'}`);
        }
      });
    });

  r.command('rotate-key')
    .summary('publish a fresh encryption key as version + 1 (§5.1, §5.6)')
    .description('Adds a fresh encryption key to the key file, then publishes it. The receiver loads its keys at start: a running receiver would not know the new key, so this refuses while the receiver API answers, unless --force (then restart the receiver at once).')
    .option('--force', 'rotate even though the receiver is running')
    .action(async (o: { force?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOpts;
      const out = new Out(!!g.json);
      const s = resolveSettings(g);
      const path = keyFileOf(s);
      const keys = load(path);
      if (s.receiverUrl && !o.force) {
        const running = await fetch(`${s.receiverUrl}/healthz`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false);
        if (running) throw refused('receiver-running', `the receiver at ${s.receiverUrl} is running with the old keys loaded: stop it first (or --force and restart it right after)`);
      }
      const { c, contract } = await chainOf(s);
      const k = addEncryptionKey(keys);
      const p = await out.step('publishing the new key record', () => publish(c, contract, keys, k));
      out.result({ ...describe(keys, path), version: p.version, tx: p.tx }, () => out.line(`published encryption key v${p.version} (${p.tx}); older keys stay in ${path} until erased`));
    });

  r.command('add-operator')
    .argument('[address]', 'operator address (default: the operator key\'s)')
    .summary('authorise (or --remove) an operator that may enroll and revoke devices')
    .option('--remove', 'withdraw the authorisation (its past enrolments stay, §5.6)')
    .action(async (addr: string | undefined, o: { remove?: boolean }, cmd: Command) => {
      const g = cmd.optsWithGlobals() as GlobalOpts;
      const out = new Out(!!g.json);
      const s = resolveSettings(g);
      const keys = load(keyFileOf(s));
      const { c, contract } = await chainOf(s);
      const operator = addr ? parseDevice(addr) : signer(c, readKeyHex('IOTKX_OPERATOR_KEY', s.operatorKeyFile, 'operator')).account.address;
      const receiver = addressHex(keys.address) as Address;
      const already = await isOperator(c, contract, receiver, operator);
      let tx: Hex | null = null;
      if (already === !o.remove) out.note(`${operator} is already ${o.remove ? 'not ' : ''}an operator: nothing sent`);
      else tx = await out.step(`${o.remove ? 'removing' : 'authorising'} operator ${operator}`, () => sendContract(c, signer(c, toHex(keys.accountKey)), contract, 'setOperator', [operator, !o.remove]));
      out.result({ receiver, operator, authorised: !o.remove, tx }, () => out.line(`${operator} is ${o.remove ? 'no longer ' : ''}an operator of ${receiver}${tx ? ` (${tx})` : ''}`));
    });
}

// First setup without `npm start`: `iotkx chain up --deploy` (embedded anvil, deployment record), then the
// receiver's keys and key record, rotation and operators — checked independently with viem (EIP-712 signature
// of the key record recovered by viem, not by our lib).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createPublicClient, getAddress, http, verifyTypedData, type Address, type Hex } from 'viem';
import { keyExchangeAbi } from '../../contracts/build/KeyExchange.js';
import { background, BIN, iotkx, type Background } from './run.js';

jest.setTimeout(180_000);
let dir: string;
let anvil: Background;
let up: any;
const run = (args: string[]) => iotkx(args, { cwd: dir });

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotkx-setup-'));
  anvil = background(process.execPath, [BIN, 'chain', 'up', '--deploy', '--json'], { cwd: dir });
  up = JSON.parse(await anvil.line((l) => l.startsWith('{'), 60_000));
});
afterAll(async () => {
  const code = await anvil?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  expect(code).toBe(0);
});

test('chain up --deploy writes the record the other commands read; chain deploy needs a key', async () => {
  expect(up.rpcUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  const rec = JSON.parse(fs.readFileSync(path.join(dir, '.iotkx/deployment.json'), 'utf8'));
  expect(rec).toMatchObject({ chainId: 31337, address: up.deployment.address, offerTtlBlocks: 60, rpcUrl: up.rpcUrl });
  const st = await run(['chain', 'status', '--json']);
  expect(st.code).toBe(0);
  expect(st.json).toMatchObject({ chainId: 31337, contract: up.deployment.address, offerTtlBlocks: 60 });
  const noKey = await run(['chain', 'deploy', '--json']);
  expect(noKey.code).toBe(2);
  expect(noKey.json.message).toMatch(/IOTKX_DEPLOYER_KEY/);
  const other = await run(['chain', 'deploy', '--dev', '--offer-ttl', '30', '--deployment', 'other.json', '--json']);
  expect(other.code).toBe(0);
  expect(other.json.address).not.toBe(up.deployment.address);
  expect(JSON.parse(fs.readFileSync(path.join(dir, 'other.json'), 'utf8')).offerTtlBlocks).toBe(30);
});

test('receiver init (0600 key file) → fund → publish; rotate-key → v2; add-operator', async () => {
  const pc = createPublicClient({ transport: http(up.rpcUrl) });
  const contract = up.deployment.address as Address;
  // No funds yet: the keys are created, the record is not published (exit 4), and a second init publishes.
  const first = await run(['receiver', 'init', '--json']);
  expect(first.code).toBe(4);
  expect(first.json.error).toBe('insufficient-funds');
  const keyFile = path.join(dir, '.iotkx/receiver/keys.json');
  expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600);
  const shown = await run(['receiver', 'show', '--json']);
  expect(shown.code).toBe(0);
  expect(shown.json.chain.keyRecordVersion).toBe(0);
  const receiver = getAddress(shown.json.address);
  expect((await run(['chain', 'fund', receiver, '1', '--dev', '--json'])).code).toBe(0);

  const init = await run(['receiver', 'init', '--json']);
  expect(init.code).toBe(0);
  expect(init.json).toMatchObject({ created: false, published: 1 });
  const [encKey, version, sig] = await pc.readContract({ address: contract, abi: keyExchangeAbi, functionName: 'receiverKey', args: [receiver] });
  expect(version).toBe(1);
  expect(encKey).toBe(init.json.encKeys[0].publicKey);
  expect(await verifyTypedData({
    address: receiver, signature: sig as Hex,
    domain: { name: 'iotkx', version: '1', chainId: 31337, verifyingContract: contract },
    types: { ReceiverKey: [{ name: 'receiver', type: 'address' }, { name: 'version', type: 'uint32' }, { name: 'encKey', type: 'bytes' }] },
    primaryType: 'ReceiverKey', message: { receiver, version: 1, encKey: encKey as Hex },
  })).toBe(true);
  const again = await run(['receiver', 'init', '--json']);
  expect(again.json).toMatchObject({ published: 1, tx: null });

  const rot = await run(['receiver', 'rotate-key', '--json']);
  expect(rot.code).toBe(0);
  expect(rot.json.version).toBe(2);
  const [enc2, v2] = await pc.readContract({ address: contract, abi: keyExchangeAbi, functionName: 'receiverKey', args: [receiver] });
  expect(v2).toBe(2);
  expect(rot.json.encKeys.map((k: any) => [k.version, k.publicKey])).toEqual([[1, encKey], [2, enc2]]);

  const operator = up.devAccounts[1] as Address;
  const add = await run(['receiver', 'add-operator', operator, '--json']);
  expect(add.code).toBe(0);
  expect(await pc.readContract({ address: contract, abi: keyExchangeAbi, functionName: 'isOperator', args: [receiver, operator] })).toBe(true);
  const remove = await run(['receiver', 'add-operator', operator, '--remove', '--json']);
  expect(remove.code).toBe(0);
  expect(await pc.readContract({ address: contract, abi: keyExchangeAbi, functionName: 'isOperator', args: [receiver, operator] })).toBe(false);
});

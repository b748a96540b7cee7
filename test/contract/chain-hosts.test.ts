// hosts/chain: the embedded anvil (port, chain id, accounts, block time, shutdown) and the deploy helpers.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseEther } from 'viem';
import { loadArtifact } from '../../contracts/artifact.js';
import { build } from '../../contracts/build.js';
import { startAnvil, type Anvil } from '../../hosts/chain/anvil.js';
import {
  attach, connect, deployKeyExchange, fund, readDeployment, verifyDeployment, writeDeployment,
} from '../../hosts/chain/deploy.js';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

let anvil: Anvil;
beforeAll(async () => {
  build();
  anvil = await startAnvil({ chainId: 1337, accounts: 4 });
});
afterAll(async () => {
  await anvil?.stop();
});

test('anvil listens on loopback with the chosen chain id and the default-mnemonic accounts', async () => {
  expect(anvil.rpcUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  const s = await connect(anvil.rpcUrl, anvil.accounts[0].privateKey);
  expect(s.chain.id).toBe(1337);
  const onNode = (await s.publicClient.request({ method: 'eth_accounts' as never })) as string[];
  expect(onNode.map((a) => a.toLowerCase())).toEqual(anvil.accounts.map((a) => a.address.toLowerCase()));
  // first account of "test test ... junk" (m/44'/60'/0'/0/0), as published by Hardhat and Foundry
  expect(anvil.accounts[0].address).toBe('0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266');
});

test('deploy, fund, record round trip, verify', async () => {
  const s = await connect(anvil.rpcUrl, anvil.accounts[0].privateKey, 1337);
  const rec = await deployKeyExchange(s, 42);
  expect(rec).toMatchObject({ chainId: 1337, offerTtlBlocks: 42, rpcUrl: anvil.rpcUrl });
  await verifyDeployment(s, rec);
  const dir = mkdtempSync(join(tmpdir(), 'iotkx-'));
  const path = join(dir, 'sub', 'deployment.json');
  writeDeployment(rec, path);
  expect(readDeployment(path)).toEqual(rec);
  await expect(verifyDeployment(s, { ...rec, offerTtlBlocks: 41 })).rejects.toThrow(/offerTtlBlocks 42/);
  await expect(verifyDeployment(s, { ...rec, chainId: 1 })).rejects.toThrow(/chain id/);
  await expect(verifyDeployment(s, { ...rec, address: anvil.accounts[3].address })).rejects.toThrow(/no contract/);
  writeFileSync(path, JSON.stringify({ ...rec, address: '0x1234' }));
  expect(() => readDeployment(path)).toThrow(/malformed/);
  expect(() => readDeployment(join(dir, 'missing.json'))).toThrow(/cannot read/);

  const to = '0x000000000000000000000000000000000000dEaD';
  const before = await s.publicClient.getBalance({ address: to });
  await fund(s, to, parseEther('0.5'));
  expect(await s.publicClient.getBalance({ address: to })).toBe(before + parseEther('0.5'));
});

test('attach takes the deployer key from IOTKX_DEPLOYER_KEY', async () => {
  const saved = process.env.IOTKX_DEPLOYER_KEY;
  try {
    delete process.env.IOTKX_DEPLOYER_KEY;
    await expect(attach(anvil.rpcUrl)).rejects.toThrow(/IOTKX_DEPLOYER_KEY/);
    process.env.IOTKX_DEPLOYER_KEY = anvil.accounts[2].privateKey;
    const s = await attach(anvil.rpcUrl);
    expect(s.account.address).toBe(anvil.accounts[2].address);
    expect(s.chain.id).toBe(1337);
  } finally {
    if (saved === undefined) delete process.env.IOTKX_DEPLOYER_KEY;
    else process.env.IOTKX_DEPLOYER_KEY = saved;
  }
});

test('block time, and stop() ends the process', async () => {
  const a = await startAnvil({ blockTime: 1 });
  try {
    const s = await connect(a.rpcUrl, a.accounts[0].privateKey);
    const b0 = await s.publicClient.getBlockNumber({ cacheTime: 0 });
    await new Promise((r) => setTimeout(r, 2200));
    expect(await s.publicClient.getBlockNumber({ cacheTime: 0 })).toBeGreaterThanOrEqual(b0 + 1n);
  } finally {
    await a.stop();
  }
  expect(alive(a.pid)).toBe(false);
  await a.stop(); // idempotent
});

test('a missing artifact names the command that builds it', () => {
  expect(() => loadArtifact('/nonexistent/KeyExchange.json')).toThrow(/npm run build:contracts/);
  expect(loadArtifact().bytecode).toMatch(/^0x[0-9a-f]+$/);
});

// The EVM target (issue 16): the built contract runs on chains that lag mainnet, and a deployment whose code
// the node cannot run (bytecode compiled for a newer EVM) is refused at deploy time with the fix, not later
// as a receiver crash.
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { iotkx } from '../cli/run.js';
import { compile, EVM_VERSION } from '../../contracts/build.js';
import { loadArtifact } from '../../contracts/artifact.js';
import { startAnvil, type Anvil } from '../../hosts/chain/anvil.js';
import { connect, deployKeyExchange, verifyDeployment } from '../../hosts/chain/deploy.js';

let shanghai: Anvil;
beforeAll(async () => {
  shanghai = await startAnvil({ hardfork: 'shanghai', accounts: 2 });
});
afterAll(async () => {
  await shanghai?.stop();
});

/** Opcodes of a runtime bytecode, skipping PUSH data (the CBOR metadata tail is data too, cut off first). */
function opcodes(code: string): Set<number> {
  const b = Buffer.from(code.slice(2), 'hex');
  const metaLen = b.readUInt16BE(b.length - 2);
  const end = b.length - 2 - metaLen;
  const ops = new Set<number>();
  for (let i = 0; i < end; i++) {
    const op = b[i];
    ops.add(op);
    if (op >= 0x60 && op <= 0x7f) i += op - 0x5f;
  }
  return ops;
}

test(`the built artifact targets ${EVM_VERSION}: no PUSH0 (Shanghai), no MCOPY / TLOAD / TSTORE (Cancun)`, () => {
  const a = loadArtifact();
  expect(a.evmVersion).toBe(EVM_VERSION);
  const ops = opcodes(a.deployedBytecode);
  for (const [name, op] of [['PUSH0', 0x5f], ['MCOPY', 0x5e], ['TLOAD', 0x5c], ['TSTORE', 0x5d], ['BLOBHASH', 0x49], ['BLOBBASEFEE', 0x4a]] as const) {
    expect([name, ops.has(op)]).toEqual([name, false]);
  }
  // The check itself can fail: solc's newest target uses them.
  const cancun = opcodes(compile({ evmVersion: 'cancun' }).deployedBytecode);
  expect(cancun.has(0x5e) && cancun.has(0x5f)).toBe(true);
});

test('the built contract deploys and verifies on anvil --hardfork shanghai', async () => {
  const s = await connect(shanghai.rpcUrl, shanghai.accounts[0].privateKey);
  const rec = await deployKeyExchange(s, 30);
  await verifyDeployment(s, rec);
});

test('Cancun bytecode on a Shanghai node: deployKeyExchange and verifyDeployment refuse it, naming evmVersion', async () => {
  const s = await connect(shanghai.rpcUrl, shanghai.accounts[0].privateKey);
  const cancun = compile({ evmVersion: 'cancun' });
  // Deploying with the helper: the deployment succeeds on chain, the check after it reports the cause and the fix.
  await expect(deployKeyExchange(s, 30, { abi: loadArtifact().abi, bytecode: cancun.bytecode }))
    .rejects.toThrow(/cannot run.*evmVersion/s);
  // A record of such a deployment made by hand: verifyDeployment refuses it the same way.
  const hash = await s.walletClient.deployContract({ abi: loadArtifact().abi, bytecode: cancun.bytecode, args: [30n] });
  const receipt = await s.publicClient.waitForTransactionReceipt({ hash });
  expect(receipt.status).toBe('success'); // it deploys: the constructor runs, the runtime code does not
  const rec = { chainId: shanghai.chainId, address: receipt.contractAddress!, block: Number(receipt.blockNumber), offerTtlBlocks: 30, rpcUrl: shanghai.rpcUrl };
  const err = await verifyDeployment(s, rec).then(() => undefined, (e: Error) => e);
  expect(err?.message).toMatch(/cannot run/);
  expect(err?.message).toMatch(new RegExp(`evmVersion.*${EVM_VERSION}`));

  // `iotkx chain status` says the same, as its own error code (exit 4, chain).
  const dir = mkdtempSync(join(tmpdir(), 'iotkx-evm-'));
  const st = await iotkx(['chain', 'status', '--rpc-url', shanghai.rpcUrl, '--contract', rec.address, '--json'], { cwd: dir });
  expect(st.json).toMatchObject({ ok: false, error: 'evm-unsupported', exit: 4 });
  expect(st.json.message).toMatch(/evmVersion/);
  const good = await deployKeyExchange(s, 30);
  const ok = await iotkx(['chain', 'status', '--rpc-url', shanghai.rpcUrl, '--contract', good.address, '--json'], { cwd: dir });
  expect(ok.code).toBe(0);
  expect(ok.json).toMatchObject({ contract: good.address, offerTtlBlocks: 30, endpoint: { evm: 'shanghai', baseFee: true, push0: true, mcopy: false, missingMethods: [], problems: [] } });
});

test('iotkx chain status names a method the relay forwards that the node lacks, and exits 4', async () => {
  // A node in front of the Shanghai anvil that has no eth_feeHistory (as some gateways do).
  const proxy = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString());
    const one = async (m: { id: unknown; method: string }) => m.method === 'eth_feeHistory'
      ? { jsonrpc: '2.0', id: m.id, error: { code: -32601, message: 'the method eth_feeHistory does not exist/is not available' } }
      : (await fetch(shanghai.rpcUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(m) })).json();
    const answer = Array.isArray(body) ? await Promise.all(body.map(one)) : await one(body);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
  try {
    const url = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
    const dir = mkdtempSync(join(tmpdir(), 'iotkx-evm-'));
    const st = await iotkx(['chain', 'status', '--rpc-url', url, '--json'], { cwd: dir });
    expect(st.code).toBe(4);
    expect(st.json.endpoint.missingMethods).toEqual(['eth_feeHistory']);
    expect(st.json.endpoint.problems.join(' ')).toMatch(/lacks methods the relay forwards to devices: eth_feeHistory/);
  } finally {
    proxy.closeAllConnections();
    proxy.close();
  }
});

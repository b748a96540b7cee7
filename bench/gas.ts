// Gas of every KeyExchange transaction, measured from receipts on the embedded anvil, beside a floor:
//   floor = 21,000 (intrinsic) + calldata (4 gas a zero byte, 16 a non-zero byte; EIP-2028)
//           + 20,000 per storage slot that goes from zero to non-zero (EIP-2200 SSTORE_SET).
// Since Prague a transaction also pays at least the EIP-7623 calldata floor, 21,000 + 10 × tokens with
// tokens = zeros + 4 × non-zeros; it is shown too, and the higher of the two floors is the floor.
// Usage: npx tsx bench/gas.ts [--compare-pipelines] [--compare-evm]
// --compare-evm: the built target (contracts/build.ts EVM_VERSION) beside solc's newest default, same anvil.
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { getContract, hexToBytes, toHex, type Address, type Hex, type TransactionReceipt } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { loadArtifact } from '../contracts/artifact.js';
import { compile, EVM_VERSION, type CompileOptions } from '../contracts/build.js';
import { startAnvil } from '../hosts/chain/anvil.js';
import { connect, deployKeyExchange } from '../hosts/chain/deploy.js';
import { channelId, proofFor, signKeyAcceptance, signReceiverKey } from '../hosts/chain/signing.js';

const TX_BASE = 21_000; // Yellow Paper G_transaction
const ZERO_BYTE = 4; // EIP-2028 G_txdatazero
const NONZERO_BYTE = 16; // EIP-2028 G_txdatanonzero
const SSTORE_SET = 20_000; // EIP-2200 / EIP-2929 SSTORE_SET_GAS
const FLOOR_PER_TOKEN = 10; // EIP-7623 TOTAL_COST_FLOOR_PER_TOKEN

export interface GasRow {
  op: string;
  gasUsed: number;
  calldataBytes: number;
  calldataGas: number;
  newSlots: number;
  /** 21,000 + calldata + 20,000 × new slots. */
  floor: number;
  /** EIP-7623: 21,000 + 10 × (zeros + 4 × non-zeros). */
  floor7623: number;
  /** gasUsed − max(floor, floor7623). */
  overhead: number;
  /** Target from the issue, if any. */
  target?: number;
}

function calldataCost(input: Hex) {
  const b = hexToBytes(input);
  const zeros = b.filter((x) => x === 0).length;
  const nonzeros = b.length - zeros;
  return { bytes: b.length, gas: zeros * ZERO_BYTE + nonzeros * NONZERO_BYTE, tokens: zeros + 4 * nonzeros };
}

/** Starts anvil, deploys KeyExchange (built artifact, or compiled with `compileOptions`), measures each operation. */
export async function gasBench(opts: { compileOptions?: CompileOptions; offerTtlBlocks?: number } = {}): Promise<GasRow[]> {
  const anvil = await startAnvil();
  try {
    const [deployerKey, receiverKey, operatorKey, deviceKey] = anvil.accounts.map((a) => a.privateKey);
    const s = await connect(anvil.rpcUrl, deployerKey, anvil.chainId);
    let address: Address;
    if (opts.compileOptions) {
      const a = compile(opts.compileOptions);
      const hash = await s.walletClient.deployContract({ abi: a.abi, bytecode: a.bytecode, args: [BigInt(opts.offerTtlBlocks ?? 100)] });
      address = (await s.publicClient.waitForTransactionReceipt({ hash })).contractAddress!;
    } else {
      address = (await deployKeyExchange(s, opts.offerTtlBlocks ?? 100)).address;
    }
    const abi = loadArtifact().abi;
    const as = async (key: Hex) => {
      const c = await connect(anvil.rpcUrl, key, anvil.chainId);
      return { account: privateKeyToAccount(key), kx: getContract({ address, abi, client: { public: c.publicClient, wallet: c.walletClient } }), c };
    };
    const receiver = await as(receiverKey);
    const operator = await as(operatorKey);
    const device = await as(deviceKey);
    const rows: GasRow[] = [];
    const measure = async (op: string, newSlots: number, send: Promise<Hex>, target?: number) => {
      const hash = await send;
      const receipt: TransactionReceipt = await s.publicClient.waitForTransactionReceipt({ hash });
      if (receipt.status !== 'success') throw new Error(`${op} reverted`);
      const tx = await s.publicClient.getTransaction({ hash });
      const cd = calldataCost(tx.input);
      const floor = TX_BASE + cd.gas + SSTORE_SET * newSlots;
      const floor7623 = TX_BASE + FLOOR_PER_TOKEN * cd.tokens;
      const gasUsed = Number(receipt.gasUsed);
      rows.push({ op, gasUsed, calldataBytes: cd.bytes, calldataGas: cd.gas, newSlots, floor, floor7623,
        overhead: gasUsed - Math.max(floor, floor7623), target });
    };

    const encKey = () => privateKeyToAccount(generatePrivateKey()).publicKey;
    const e1 = encKey();
    await measure('setReceiverKey (first)', 5, receiver.kx.write.setReceiverKey(
      [e1, await signReceiverKey(receiver.account, anvil.chainId, address, 1, e1)]));
    const e2 = encKey();
    await measure('setReceiverKey (rotate)', 0, receiver.kx.write.setReceiverKey(
      [e2, await signReceiverKey(receiver.account, anvil.chainId, address, 2, e2)]));
    await measure('setOperator', 1, receiver.kx.write.setOperator([operator.account.address, true]));
    const dev = device.account.address;
    const rcv = receiver.account.address;
    await measure('enroll (by operator)', 1, operator.kx.write.enroll([rcv, dev]));
    const chId = channelId(anvil.chainId, address, dev, rcv);
    const wrapped = () => toHex(randomBytes(137)); // ECIES wire size for a 32-byte K (§2)
    const offer = (epoch: bigint) => {
      const pc = proofFor(toHex(randomBytes(32)), chId, epoch);
      return { pc, send: device.kx.write.offerKey([rcv, epoch, 2, wrapped(), pc.commitment]) };
    };
    const o1 = offer(1n);
    await measure('offerKey (epoch 1)', 1, o1.send, 60_000);
    await measure('acceptKey', 0, receiver.kx.write.acceptKey(
      [dev, 1n, o1.pc.proof, await signKeyAcceptance(receiver.account, anvil.chainId, address, dev, 1n, o1.pc.proof)]), 40_000);
    await measure('offerKey (epoch 2)', 0, offer(2n).send, 45_000);
    await measure('rejectKey', 0, receiver.kx.write.rejectKey([dev, 2n, 2]));
    await measure('revoke (by operator)', 0, operator.kx.write.revoke([rcv, dev]));
    return rows;
  } finally {
    await anvil.stop();
  }
}

export function gasTable(rows: GasRow[]): string {
  const head = '| operation | gas used | target | calldata B | calldata gas | new slots | floor | EIP-7623 floor | over floor |\n' +
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|';
  const f = (n: number) => n.toLocaleString('en-US');
  return [head, ...rows.map((r) =>
    `| ${r.op} | ${f(r.gasUsed)} | ${r.target ? '≤ ' + f(r.target) : ''} | ${r.calldataBytes} | ${f(r.calldataGas)} | ${r.newSlots} | ${f(r.floor)} | ${f(r.floor7623)} | ${f(r.overhead)} |`,
  )].join('\n');
}

async function main(): Promise<void> {
  if (process.argv.includes('--compare-pipelines')) {
    for (const viaIR of [false, true]) {
      console.log(`\n### solc optimizer on, viaIR ${viaIR}\n`);
      console.log(gasTable(await gasBench({ compileOptions: { viaIR } })));
    }
  } else if (process.argv.includes('--compare-evm')) {
    for (const evmVersion of [EVM_VERSION, 'osaka']) {
      console.log(`\n### solc optimizer on, viaIR, evmVersion ${evmVersion}\n`);
      console.log(gasTable(await gasBench({ compileOptions: { evmVersion } })));
    }
  } else {
    console.log(gasTable(await gasBench()));
  }
}

// No top-level await: jest runs this file as CommonJS when a test imports gasBench.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
}

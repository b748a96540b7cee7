// The EIP-712 domain follows block.chainid at call time (§2): after the node's chain id changes, signatures
// for the old id are refused and signatures for the new one accepted.
import { type Hex } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { connect } from '../../hosts/chain/deploy.js';
import { signReceiverKey } from '../../hosts/chain/signing.js';
import { setupChain, type ChainEnv } from '../helpers/chain.js';

let env: ChainEnv;
beforeAll(async () => {
  env = await setupChain(['R'], 10, 31337);
});
afterAll(async () => {
  await env?.stop();
});

test('domain separator is recomputed when the chain id changes', async () => {
  const R = env.actors.R;
  const k1: Hex = privateKeyToAccount(generatePrivateKey()).publicKey;
  expect((await env.tx(R, 'setReceiverKey', [k1, await signReceiverKey(R.account, 31337, env.address, 1, k1)])).error).toBeUndefined();

  await env.pub.request({ method: 'anvil_setChainId' as never, params: [4242] as never });
  // clients pinned to the new id (viem refuses to send on a chain other than its own)
  R.session = await connect(env.anvil.rpcUrl, env.anvil.accounts[1].privateKey, 4242);
  expect(await R.session.publicClient.getChainId()).toBe(4242);

  const k2: Hex = privateKeyToAccount(generatePrivateKey()).publicKey;
  const oldDomain = await signReceiverKey(R.account, 31337, env.address, 2, k2);
  const newDomain = await signReceiverKey(R.account, 4242, env.address, 2, k2);
  expect((await env.tx(R, 'setReceiverKey', [k2, oldDomain])).error).toBe('BadSignature');
  expect((await env.tx(R, 'setReceiverKey', [k2, newDomain])).error).toBeUndefined();
  expect(await env.read('receiverKey', [R.address])).toEqual([k2, 2, newDomain]);
});

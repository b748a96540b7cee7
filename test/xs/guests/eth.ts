import './prelude.js';
import { serve } from '../../../hosts/xs/guest.js';
import { addressOf, parseAddress, toChecksumAddress } from '../../../lib/address.js';
import { decodeTransaction, signTransaction, type Transaction } from '../../../lib/tx.js';
import { keyAcceptanceDigest, receiverKeyDigest, recoverTypedSigner, signTyped, type Eip712Domain } from '../../../lib/eip712.js';
import * as kx from '../../../lib/keyexchange-abi.js';
import { decodeParams, type AbiType } from '../../../lib/abi.js';
import { getPublicKey } from '../../../lib/secp256k1.js';
import { RpcClient } from '../../../lib/rpc.js';
import { utf8Decode, utf8Encode } from '../../../lib/bytes.js';
import { wycheproofFailures } from '../../lib/eth-cases.js';

const codeOf = (f: () => unknown): string | null => {
  try { f(); return null; } catch (e: any) { return e?.code ?? `untyped: ${e?.message}`; }
};

serve({
  signTx: (tx: Transaction, sk: Uint8Array) => signTransaction(tx, sk),
  signTxs: (txs: Transaction[], sk: Uint8Array) => txs.map((tx) => signTransaction(tx, sk)),
  decodeTx: (raw: Uint8Array) => decodeTransaction(raw),
  decodeCodes: (raws: Uint8Array[]) => raws.map((r) => codeOf(() => decodeTransaction(r))),
  addresses: (sks: Uint8Array[]) => sks.map((sk) => toChecksumAddress(addressOf(getPublicKey(sk)))),
  parseAddress: (s: string) => parseAddress(s),
  receiverKeyDigest: (d: Eip712Domain, m: any) => receiverKeyDigest(d, m),
  keyAcceptanceDigest: (d: Eip712Domain, m: any) => keyAcceptanceDigest(d, m),
  signTyped: (digest: Uint8Array, sk: Uint8Array) => signTyped(digest, sk),
  recoverTyped: (digest: Uint8Array, sig: Uint8Array) => recoverTypedSigner(digest, sig),
  offerKey: (o: any) => kx.encodeOfferKey(o),
  acceptKey: (a: any) => kx.encodeAcceptKey(a),
  decodeReceiverKey: (d: Uint8Array) => kx.decodeReceiverKey(d),
  decodeChannel: (d: Uint8Array) => kx.decodeChannel(d),
  decodeLog: (log: kx.RawLog) => kx.decodeLog(log),
  errorName: (d: Uint8Array) => kx.errorName(d) ?? null,
  decodeParamsCode: (types: AbiType[], data: Uint8Array) => codeOf(() => decodeParams(types, data)),
  wycheproof: (file: any) => ({
    failing: wycheproofFailures(file),
    count: file.testGroups.reduce((n: number, g: any) => n + g.tests.length, 0),
  }),
  /** The RPC client over a canned in-guest transport: answers `bodies` in turn. */
  rpc: async (bodies: string[]) => {
    let i = 0;
    const sent: string[] = [];
    const c = new RpcClient({
      request: async (_m, _u, body) => {
        sent.push(utf8Decode(body!));
        return { status: 200, body: utf8Encode(bodies[i++]) };
      },
    }, 'http://relay/rpc');
    const out: unknown[] = [];
    out.push(await c.chainId());
    out.push(await c.getTransactionReceipt(new Uint8Array(32).fill(1)));
    try { await c.blockNumber(); } catch (e: any) { out.push(e.code); }
    return { out, sent };
  },
});

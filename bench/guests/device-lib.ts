/**
 * What the firmware takes from lib/ for signing, key wrap, readings and encoding:
 * the size entry of the device bundle (bench/RESULTS.md).
 */
export { installRandom, randomSecretKey, getPublicKey, assertPublicKey } from '../../lib/secp256k1.js';
export { addressOf } from '../../lib/address.js';
export { signTransaction } from '../../lib/tx.js';
export { encodeFunctionCall } from '../../lib/abi.js';
export { receiverKeyDigest, keyAcceptanceDigest, recoverTypedSigner } from '../../lib/eip712.js';
export { wrapKey } from '../../lib/ecies.js';
export { channelId, proofOf, commitmentOf, dataKeyOf } from '../../lib/ids.js';
export { sealReading } from '../../lib/reading.js';
export { encodeCbor } from '../../lib/cbor.js';

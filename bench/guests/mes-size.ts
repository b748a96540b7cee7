/** Size entry: what micro-eth-signer needs to sign a transaction. */
export { Transaction } from 'micro-eth-signer';

/** Size entry: what eciesjs needs to wrap a key. */
export { encrypt, ECIES_CONFIG } from 'eciesjs';

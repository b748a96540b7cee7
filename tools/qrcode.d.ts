// Minimal types for the parts of `qrcode` (1.5) the CLI uses; the package ships none.
declare module 'qrcode' {
  interface Options { type?: string; small?: boolean; errorCorrectionLevel?: 'L' | 'M' | 'Q' | 'H'; margin?: number; width?: number }
  /** The symbol: `modules.data[row * size + col]` is truthy for a dark module. */
  interface QRCodeSymbol { modules: { size: number; data: ArrayLike<number | boolean> }; version: number }
  export function toString(text: string, opts?: Options): Promise<string>;
  export function toFile(path: string, text: string, opts?: Options): Promise<void>;
  export function create(text: string, opts?: Options): QRCodeSymbol;
  const QRCode: { toString: typeof toString; toFile: typeof toFile; create: typeof create };
  export default QRCode;
}

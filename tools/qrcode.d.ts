// Minimal types for the parts of `qrcode` (1.5) the CLI uses; the package ships none.
declare module 'qrcode' {
  interface Options { type?: string; small?: boolean; errorCorrectionLevel?: 'L' | 'M' | 'Q' | 'H'; margin?: number; width?: number }
  export function toString(text: string, opts?: Options): Promise<string>;
  export function toFile(path: string, text: string, opts?: Options): Promise<void>;
  const QRCode: { toString: typeof toString; toFile: typeof toFile };
  export default QRCode;
}

// Mirrors the Moddable SDK's typings/embedded_io/serial.d.ts (ECMA-419; MODDABLE.md §3).
// On esp32 the default format is "buffer"; in -d/-i builds UART0 belongs to xsbug.
declare module "embedded:io/serial" {
  interface SerialOptions {
    port?: number;
    receive?: number;
    transmit?: number;
    baud: number;
    format?: "buffer" | "number";
    onReadable?: (this: Serial, count: number) => void;
    onWritable?: (this: Serial, count: number) => void;
  }
  class Serial {
    constructor(options: SerialOptions);
    read(): number | ArrayBuffer | undefined;
    read(byteLength: number): ArrayBuffer | undefined;
    write(data: ArrayBuffer | ArrayBufferView): void;
    close(): void;
    format: "buffer" | "number";
  }
  export { Serial as default };
}

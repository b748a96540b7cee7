// Mirrors the Moddable SDK's typings/http.d.ts, the legacy HTTP client (MODDABLE.md §3):
// new Request({host, port, path, method, headers: [k, v, ...], body}); callback(message, value1, value2).
declare module "http" {
  interface RequestOptions {
    host?: string;
    address?: string;
    port?: number;
    path?: string;
    method?: string;
    headers?: Array<string | number>;
    body?: ArrayBuffer | string | boolean;
    response?: typeof String | typeof ArrayBuffer;
  }
  class Request {
    constructor(options: RequestOptions);
    callback(message: number, value1?: any, value2?: any): void;
    read(type: typeof ArrayBuffer, until?: number): ArrayBuffer;
    close(): void;
    static readonly error: -2;
    static readonly status: 1;
    static readonly header: 2;
    static readonly headersComplete: 3;
    static readonly responseFragment: 4;
    static readonly responseComplete: 5;
    static readonly requestFragment: 6;
  }
  export { Request };
}

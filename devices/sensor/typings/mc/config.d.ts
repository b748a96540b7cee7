// Mirrors the Moddable SDK's typings/mc/config.d.ts: the manifest's frozen "config" object.
declare module "mc/config" {
  const config: Record<string, unknown>;
  export { config as default };
}

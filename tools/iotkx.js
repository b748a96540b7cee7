#!/usr/bin/env node
// `iotkx` bin (package.json "bin"): runs the TypeScript CLI (tools/cli.ts) through tsx's loader in this
// same process, so signals (Ctrl-C) and the exit code are the CLI's own.
import { register } from 'tsx/esm/api';

register();
await import('./cli.ts');

/** The `iotkx` command tree (commander). Every command has --help; global options go before or after it. */
import { Command, Option } from 'commander';
import { EXIT_HELP } from './errors.js';
import { registerChain } from './commands/chain.js';
import { registerDevices } from './commands/devices.js';
import { registerFlash } from './commands/flash.js';
import { registerPair } from './commands/pair.js';
import { registerReadings } from './commands/readings.js';
import { registerReceiver } from './commands/receiver.js';
import { registerRevoke } from './commands/revoke.js';
import { registerSim } from './commands/sim.js';
import { registerStatus } from './commands/status.js';

export function buildProgram(): Command {
  const program = new Command('iotkx')
    .description(`Technician tool for iotkx: pair, provision, enroll, fund, flash and inspect devices.

Where the services are comes from flags, environment variables, or the join file \`npm start\` writes
(.iotkx/run/system.json; --system <file>), then the deployment record (.iotkx/deployment.json).
Secrets never come from flags: IOTKX_OPERATOR_KEY / --operator-key-file, IOTKX_DEPLOYER_KEY, key files.`)
    .version('0.1.0')
    .exitOverride()
    .configureHelp({ helpWidth: 120 })
    .configureOutput({ outputError: (str, write) => write(str) })
    .addOption(new Option('--system <file>', 'join file written by `npm start`').env('IOTKX_SYSTEM'))
    .addOption(new Option('--deployment <file>', 'deployment record (hosts/chain/deploy.ts)').env('IOTKX_DEPLOYMENT'))
    .addOption(new Option('--rpc-url <url>', 'chain JSON-RPC URL').env('IOTKX_RPC_URL'))
    .addOption(new Option('--chain-id <id>', 'chain id (checked against the node)').env('IOTKX_CHAIN_ID'))
    .addOption(new Option('--contract <address>', 'KeyExchange address').env('IOTKX_CONTRACT'))
    .addOption(new Option('--relay-url <url>', 'relay base URL').env('IOTKX_RELAY_URL'))
    .addOption(new Option('--receiver-url <url>', 'receiver API base URL').env('IOTKX_RECEIVER_URL'))
    .addOption(new Option('--receiver <address>', 'receiver account address').env('IOTKX_RECEIVER'))
    .addOption(new Option('--operator-key-file <file>', 'operator private key file (or IOTKX_OPERATOR_KEY)').env('IOTKX_OPERATOR_KEY_FILE'))
    .addOption(new Option('--receiver-key-file <file>', 'receiver key file').env('IOTKX_RECEIVER_KEY_FILE'))
    .option('--json', 'machine-readable output on stdout (one JSON object, or JSON lines for readings); no progress')
    .addHelpText('after', `\n${EXIT_HELP}\n\nRun \`iotkx <command> --help\` for a command's options.`);
  registerReceiver(program);
  registerChain(program);
  registerDevices(program);
  registerPair(program);
  registerStatus(program);
  registerReadings(program);
  registerRevoke(program);
  registerFlash(program);
  registerSim(program);
  return program;
}

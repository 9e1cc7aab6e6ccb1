#!/usr/bin/env node
import 'reflect-metadata';
import { Command, Option } from 'commander';
import { isEvccError } from '../core/errors.ts';
import type { GlobalOptions } from './runtime.ts';
import { registerCommands } from './commands/index.ts';

/**
 * `evcc` — the EVCC runtime and its bench/factory tools. Exit codes: 0 ok, 1 typed failure (code printed),
 * 2 usage error, 70 unexpected internal error.
 */
const program = new Command('evcc')
  .description('EV-side ISO 15118 communication controller runtime')
  .addOption(new Option('-c, --config <file>', 'JSON config file'))
  .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']))
  .addOption(new Option('--log-json <file>', 'also append the machine-readable JSON log to this file'))
  .option('--no-log-fields', 'bench log lines without structured key=value fields')
  .showHelpAfterError();

try {
  await registerCommands(program, () => program.opts<GlobalOptions>(), process.argv.slice(2));
  await program.parseAsync(process.argv);
} catch (err) {
  if (isEvccError(err)) {
    process.stderr.write(`evcc: ${err.code}: ${err.message}\n`);
    process.exitCode = 1;
  } else {
    process.stderr.write(`evcc: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 70;
  }
}

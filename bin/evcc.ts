#!/usr/bin/env node
import 'reflect-metadata';
import { Command, Option } from 'commander';
import type { GlobalOptions } from './runtime.ts';
import { registerCommands } from './commands/index.ts';
import { debugFromEnv, describeFailure } from './failure.ts';

/**
 * `evcc` — the EVCC runtime and its bench/factory tools. Exit codes: 0 ok, 1 typed failure (`evcc: CODE: message`),
 * 2 usage error, 70 internal error (`evcc: INTERNAL: message`: a bug). Stacks only with `--debug` or EVCC_DEBUG=1.
 */
const program = new Command('evcc')
  .description('EV-side ISO 15118 communication controller runtime')
  .addOption(new Option('-c, --config <file>', 'JSON config file'))
  .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']))
  .addOption(new Option('--log-json <file>', 'also append the machine-readable JSON log to this file (rotated: config log.jsonMaxBytes, log.jsonKeepFiles)'))
  .option('--no-log-fields', 'bench log lines without structured key=value fields')
  .option('--debug', 'print stacks and causes of failures (also EVCC_DEBUG=1)')
  .showHelpAfterError();

function report(err: unknown): void {
  const r = describeFailure(err, Boolean(program.opts<GlobalOptions>().debug) || debugFromEnv());
  process.stderr.write(r.text);
  process.exitCode = r.exitCode;
}

// A failure outside the command's promise chain (a stream's 'error' event, a stray rejection) ends the process the
// same way: one line, no stack unless asked for.
process.on('uncaughtException', (err) => {
  report(err);
  process.exit();
});
process.on('unhandledRejection', (err) => {
  report(err);
  process.exit();
});

try {
  await registerCommands(program, () => program.opts<GlobalOptions>(), process.argv.slice(2));
  await program.parseAsync(process.argv);
} catch (err) {
  report(err);
}

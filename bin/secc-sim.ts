#!/usr/bin/env node
/**
 * Stand-alone entry of the SECC simulator: the same `sim-secc` command as `evcc sim-secc`, without loading every
 * other command module of the CLI (tests and benches spawn it inside a network namespace).
 */
import 'reflect-metadata';
import { Command, Option } from 'commander';
import { isEvccError } from '../core/errors.ts';
import type { GlobalOptions } from './runtime.ts';
import { registerSimSecc } from './commands/sim-secc.ts';

const program = new Command('secc-sim')
  .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']))
  .option('--log-json <file>', 'also append the JSON log to this file');
registerSimSecc(program, () => program.opts<GlobalOptions>());
try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.stderr.write(`secc-sim: ${isEvccError(err) ? `${err.code}: ${err.message}` : String((err as Error).stack ?? err)}\n`);
  process.exitCode = isEvccError(err) ? 1 : 70;
}

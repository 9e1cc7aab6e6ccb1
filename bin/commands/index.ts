import type { Command } from 'commander';
import type { GlobalOptions } from '../runtime.ts';
import { registerSlac } from './slac.ts';
import { registerSimSlac } from './sim-slac.ts';
import { registerTpm } from './tpm.ts';
import { registerBoot } from './boot.ts';
import { registerOem } from './oem.ts';
import { registerMo } from './mo.ts';
import { registerBundle } from './bundle.ts';
import { registerOemBackend } from './oem-backend.ts';
import { registerOta } from './ota.ts';
import { registerPki } from './pki.ts';
import { registerSimSecc } from './sim-secc.ts';
import { registerSdpTools } from './sdp.ts';
import { registerExi } from './exi.ts';
import { registerBenchSession } from './bench-session.ts';

/** A subcommand module: adds itself to the program. Global options are read lazily at action time. */
export type CommandModule = (program: Command, globals: () => GlobalOptions) => void;

// One line per command module; each module is the composition root of its subcommand.
const modules: CommandModule[] = [registerBenchSession, registerSlac, registerSimSlac, registerTpm, registerBoot, registerOem, registerMo, registerBundle, registerPki, registerSimSecc, registerSdpTools, registerOemBackend, registerOta, registerExi];

export function registerCommands(program: Command, globals: () => GlobalOptions): void {
  for (const register of modules) register(program, globals);
}

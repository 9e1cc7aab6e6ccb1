import 'reflect-metadata';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { COMMAND_SUMMARIES, commandNameOf, registerAllCommands, registerCommands } from './index.ts';

describe('lazy command loading', () => {
  it('finds the command name behind global options and their values', () => {
    expect(commandNameOf(['-c', 'bench.json', '--log-level', 'debug', 'slac', '--iface', 'eth1'])).toBe('slac');
    expect(commandNameOf(['--no-log-fields', 'tpm', 'sign'])).toBe('tpm');
    expect(commandNameOf(['--help'])).toBeUndefined();
  });

  it('top-level help lists every command with its module\'s own description, without loading a module', async () => {
    const all = new Command('evcc');
    await registerAllCommands(all, () => ({}));
    const fromModules = Object.fromEntries(all.commands.map((c) => [c.name(), c.description()]));
    expect(COMMAND_SUMMARIES).toEqual(fromModules);
    expect(Object.keys(COMMAND_SUMMARIES)).toEqual(Object.keys(fromModules)); // same order as before
    const help = new Command('evcc');
    await registerCommands(help, () => ({}), ['--help']);
    expect(help.commands.map((c) => c.name())).toEqual(Object.keys(COMMAND_SUMMARIES));
    expect(help.commands.every((c) => c.options.length === 0 && c.commands.length === 0)).toBe(true);
  }, 60_000);

  it('a named command (also through `help NAME`) loads its module', async () => {
    const p = new Command('evcc');
    await registerCommands(p, () => ({}), ['help', 'run']);
    expect(p.commands.map((c) => c.name())).toEqual(['run']);
    expect(p.commands[0]!.options.length).toBeGreaterThan(0);
  }, 60_000);
});

import { createRequire } from 'node:module';
import type { Prerequisite } from './prereq.ts';

/**
 * Pseudo-terminals as simulated serial boards (PLATFORM.md): node-pty's low-level `native.open` gives a master fd
 * (the board's side) and a path the product opens with serialport. Keep `slave` open for the whole test, or the
 * master reads EIO.
 */
const require = createRequire(import.meta.url);
interface PtyNative { open(cols: number, rows: number): { master: number; slave: number; pty: string } }

export const ptyAvailable: Prerequisite = {
  name: 'node-pty',
  present: () => {
    try {
      require('node-pty');
      return true;
    } catch {
      return false;
    }
  },
};

export function openPty(): { master: number; slave: number; path: string } {
  const { native } = require('node-pty') as { native: PtyNative };
  const { master, slave, pty } = native.open(80, 24);
  return { master, slave, path: pty };
}

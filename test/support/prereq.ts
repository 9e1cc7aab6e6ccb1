import { execFileSync } from 'node:child_process';
import { describe } from 'vitest';

/**
 * Real-component tests declare what they need. On a laptop a missing prerequisite skips the suite (with the
 * reason); under CI (`CI=true`) it FAILS the suite: a skipped real-component test is not a pass.
 */
export interface Prerequisite {
  name: string;
  present(): boolean;
}

export const inCi = (): boolean => /^(1|true|yes)$/i.test(process.env.CI ?? '');

export function tool(binary: string): Prerequisite {
  return {
    name: `command ${binary}`,
    present: () => {
      try {
        execFileSync('sh', ['-c', `command -v ${binary}`], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    },
  };
}

export const root: Prerequisite = { name: 'root (CAP_NET_ADMIN, CAP_NET_RAW)', present: () => process.getuid?.() === 0 };

export function missing(prereqs: Prerequisite[]): string[] {
  return prereqs.filter((p) => !p.present()).map((p) => p.name);
}

/** `describe` that runs when every prerequisite is present, skips on a laptop, and fails under CI. */
export function describeWith(prereqs: Prerequisite[]) {
  const absent = missing(prereqs);
  return (name: string, body: () => void): void => {
    if (absent.length === 0) {
      describe(name, body);
    } else if (inCi()) {
      describe(name, () => {
        throw new Error(`prerequisites missing under CI: ${absent.join(', ')}`);
      });
    } else {
      describe.skip(`${name} [skipped: missing ${absent.join(', ')}]`, body);
    }
  };
}

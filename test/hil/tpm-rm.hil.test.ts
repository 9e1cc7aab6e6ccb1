/**
 * The open point of hal/tpm/README.md on the real TPM (TPM.md §8, highest priority): does the device's TCTI carry
 * context-saved policy sessions across tool processes, and does one process's failing call leave another's session
 * alone? Only unauthorised policy sessions are used: safe on a provisioned vehicle, nothing persistent is touched.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hasResourceManager, Tpm2Tools } from '../../hal/tpm/tpm2-tools.ts';
import { hilHardware, missing } from './hardware.ts';

const hw = hilHardware(process.env, join(import.meta.dirname, '..', '..'));

describe('HIL: TPM resource manager', () => {
  const why = missing(hw, ['tpm']);
  const name = 'the TCTI carries a pre-armed session across processes; another process\'s refused call leaves it';
  if (why) {
    it.skip(`${name} — NOT RUN (${why})`, () => undefined);
    return;
  }
  it(name, async () => {
    expect(hasResourceManager(hw.tpm!), `${hw.tpm} is no resource manager (hal/tpm/README.md)`).toBe(true);
    const dir = await mkdtemp(join(tmpdir(), 'evcc-hil-tpm-rm-'));
    const runtime = await Tpm2Tools.open({ tcti: hw.tpm!, runDir: join(dir, 'runtime') });
    const other = await Tpm2Tools.open({ tcti: hw.tpm!, runDir: join(dir, 'other') });
    try {
      const before = (await runtime.handles('saved-session')).length;
      const armed = await runtime.startPolicySession(); // process 1 saves it …
      await runtime.policy(armed, [{ kind: 'pcr', bank: 'sha256', pcrs: [14] }]); // … process 2 loads, extends, saves it
      const s = await other.startPolicySession();
      await expect(other.policy(s, [{ kind: 'pcr', bank: 'sha256', pcrs: [14], expectedValue: new Uint8Array(randomBytes(32)) }]))
        .rejects.toMatchObject({ code: 'TPM_POLICY_PCR' });
      await runtime.policy(armed, [{ kind: 'pcr', bank: 'sha256', pcrs: [14] }]); // still there
      await runtime.flushSession(armed);
      expect((await runtime.handles('saved-session')).length).toBe(before); // nothing leaked
    } finally {
      await runtime.close();
      await other.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

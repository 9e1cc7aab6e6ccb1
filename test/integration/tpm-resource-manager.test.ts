import { createHash, generateKeyPairSync, randomBytes, verify as cryptoVerify } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { EvccError } from '../../core/errors.ts';
import { KeyService } from '../../firmware/keys/key-service.ts';
import { backendExport } from '../../firmware/keys/provision.ts';
import { wrapContractKey } from '../../deploy/mo/wrap.ts';
import { writeExport } from '../../bin/commands/tpm.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { TPM_TRANSPORTS, TpmLab, transportPrereqs } from './tpm-lab.ts';

/**
 * Must show 4 of issue 12: the key service through a resource manager (tpm2-abrmd in front of swtpm, as /dev/tpmrm0
 * on the device) against the direct TCTI. A tool call that FAILS in the middle of a charging session — another
 * process's refused policy, or the runtime's own refused import — costs the pre-armed contract-key session with the
 * direct TCTI (the failure recovery flushes every session on the TPM, TPM.md §9), and no longer does behind the
 * resource manager: the next AuthorizationReq signature is still exactly one tpm2-tools process.
 */
const sha256 = (b: Uint8Array | string) => new Uint8Array(createHash('sha256').update(b).digest());

async function refused(p: Promise<unknown>, code: string): Promise<EvccError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err, `expected ${code}`).toBeInstanceOf(EvccError);
  expect((err as EvccError).code).toBe(code);
  return err as EvccError;
}

for (const transport of TPM_TRANSPORTS) describeWith([tool('swtpm'), tool('tpm2_startup'), tool('rauc'), tool('openssl'), ...transportPrereqs(transport)])(`a failing tool call in the middle of a session (${transport})`, () => {
  const behindRm = transport === 'abrmd';
  let lab: TpmLab;
  let runtime: KeyService;
  let contractPub: string;
  let blob: Awaited<ReturnType<typeof wrapContractKey>>;

  /** Signs a fresh challenge through the runtime and returns the processes on its critical path. */
  async function signChallenge(): Promise<number | undefined> {
    const message = new Uint8Array(randomBytes(32));
    const raw = await runtime.signWithContractKey(sha256(message));
    expect(cryptoVerify('sha256', message, { key: contractPub, dsaEncoding: 'ieee-p1363' }, raw)).toBe(true);
    return (await runtime.status()).lastSignCriticalPathProcesses;
  }
  async function sessionsInTpm(): Promise<number> {
    const t = await lab.driver(join(lab.base, 'probe'));
    return (await t.handles('saved-session')).length + (await t.handles('loaded-session')).length;
  }

  beforeAll(async () => {
    lab = await TpmLab.create({ transport });
    const { record } = await lab.bootedVehicle();
    await writeExport(lab.exportDir, backendExport(record));
    const contract = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    contractPub = contract.publicKey.export({ type: 'spki', format: 'pem' }) as string;
    blob = await wrapContractKey({ contractKeyPem: contract.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, deviceExportDir: lab.exportDir });
    runtime = await KeyService.open(await lab.deps(), { reclaim: true });
    await runtime.importContractKey(blob);
    expect((await lab.driver()).resourceManager).toBe(behindRm);
  });
  afterAll(async () => {
    await runtime?.close();
    await lab?.close();
  });

  it(`another process's refused policy ${behindRm ? 'leaves' : 'flushes'} the runtime's pre-armed session`, async () => {
    await runtime.arm();
    await runtime.status(); // the arming is done: its session sits (context-saved) in the TPM
    expect(await sessionsInTpm()).toBe(1);
    // e.g. `evcc pki …` or a diagnostics tool on the same TPM: its PolicyPCR with a wrong expected value is refused
    const other = await lab.driver(join(lab.base, 'other-process'));
    const s = await other.startPolicySession();
    await refused(other.policy(s, [{ kind: 'pcr', bank: 'sha256', pcrs: [14], expectedValue: new Uint8Array(randomBytes(32)) }]), 'TPM_POLICY_PCR');
    expect(other.isSessionLive(s)).toBe(false);
    // direct: the other driver's recovery flushed every session on the TPM; abrmd: only its own went
    expect(await sessionsInTpm()).toBe(behindRm ? 1 : 0);
    const critical = await signChallenge();
    if (behindRm) expect(critical).toBe(1);
    else expect(critical).toBeGreaterThan(5); // stale session: refused sign, flush, new session, state policy, sign
  });

  it(`the runtime's own refused import (corrupted CertificateUpdate blob) ${behindRm ? 'leaves' : 'costs'} its armed session`, async () => {
    await runtime.arm();
    await runtime.status();
    const dup = Buffer.from(blob.duplicate, 'base64');
    dup[dup.length - 1] = dup[dup.length - 1]! ^ 0x01;
    const e = await refused(runtime.importContractKey({ ...blob, duplicate: dup.toString('base64') }), 'TPM_BLOB_INTEGRITY');
    expect(e.details.rc).toBe('0x3DF');
    expect((await runtime.status()).armed).toBe(behindRm);
    const critical = await signChallenge(); // the previous contract key still signs
    if (behindRm) expect(critical).toBe(1);
    else expect(critical).toBe(5); // re-armed on the critical path: new session, PCR, NV, Authorize, sign
  });

  if (behindRm) {
    it('tpm2-abrmd keeps at most 4 abandoned (context-saved) sessions: four more from other processes evict the armed one, and the runtime recovers', async () => {
      await runtime.arm();
      await runtime.status();
      const others = [];
      for (let i = 0; i < 4; i++) {
        const d = await lab.driver(join(lab.base, `other-${i}`));
        others.push({ d, s: await d.startPolicySession() });
      }
      expect(await sessionsInTpm()).toBe(4); // the runtime's, the oldest, was evicted
      expect(await signChallenge()).toBeGreaterThan(5); // stale handle → reloaded once under the state policy
      // the runtime's new session in turn evicted the oldest of the others
      const flushed = await Promise.all(others.map((o) => o.d.flushSession(o.s).then(() => true, () => false)));
      expect(flushed).toEqual([false, true, true, true]);
      await runtime.status();
      expect(await sessionsInTpm()).toBe(1);
    });
  }

  it('after close nothing is left in the TPM', async () => {
    await runtime.close();
    const t = await lab.driver(join(lab.base, 'probe-end'));
    expect(await t.handles('transient')).toEqual([]);
    expect(await sessionsInTpm()).toBe(0);
    runtime = await KeyService.open(await lab.deps());
  });
});

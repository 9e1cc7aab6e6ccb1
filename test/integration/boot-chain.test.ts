import { createHash, generateKeyPairSync, randomBytes, verify as cryptoVerify } from 'node:crypto';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { EvccError } from '../../core/errors.ts';
import { DATA, type ProvisioningRecord } from '../../firmware/keys/layout.ts';
import { KeyService } from '../../firmware/keys/key-service.ts';
import { pcrAfterExtend, toHex } from '../../firmware/keys/policy.ts';
import { backendExport } from '../../firmware/keys/provision.ts';
import { unsealRuntimeSecret } from '../../firmware/keys/runtime-secret.ts';
import { parseSignedPolicy, type SignedPolicy } from '../../firmware/keys/signed-policy.ts';
import { checkMeasuredBoot } from '../../boot/measured-boot.ts';
import { runMeasureHook } from '../../boot/measure-hook.ts';
import { wrapContractKey } from '../../deploy/mo/wrap.ts';
import { writeExport } from '../../bin/commands/tpm.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { TpmLab } from './tpm-lab.ts';

/**
 * Issue #13 item 1: a measured boot that root cannot fake (boot/README.md). The initramfs hook — the image's own POSIX
 * script — measures slot A into PCR 14 before switch_root; whatever runs afterwards, root included, can only extend
 * further. On swtpm: the good chain reaches the OEM-approved state (contract key signs, runtime secret unseals);
 * a tampered root file system followed by any attacker's sequence of extends (the good digest, the approved PCR
 * value itself, …, enumerated and generated) never does: the TPM refuses both uses. The reproduced attack of the
 * issue (extend the good digest after boot, copy a saved boot record, `evcc tpm sign`) is refused.
 */
const sha256 = (b: Uint8Array | string): Uint8Array => new Uint8Array(createHash('sha256').update(b).digest());

async function refusal(p: Promise<unknown>): Promise<EvccError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err, 'expected a typed refusal').toBeInstanceOf(EvccError);
  return err as EvccError;
}

describeWith([tool('swtpm'), tool('tpm2_pcrextend'), tool('rauc'), tool('unsquashfs'), tool('openssl'), tool('sha256sum'), tool('od'), tool('mkfs.ext4')])('measured boot chain: initramfs hook → boot check (swtpm)', () => {
  let lab: TpmLab;
  let bundle: string;
  let policy: SignedPolicy;
  let record: ProvisioningRecord;
  let contractPub: string;
  /** The boot record a good boot left behind, saved by the attacker (the "copy a saved boot record"). */
  let savedBootRecord: string;
  const message = new TextEncoder().encode('SignedInfo of an AuthorizationReq');

  /** Both state-bound uses of the TPM: the contract key's signature and the runtime secret's unseal. */
  async function useKeys(): Promise<{ signature: Uint8Array; secretBytes: number }> {
    const keys = await KeyService.open(await lab.deps());
    try {
      const signature = await keys.signWithContractKey(sha256(message));
      const secret = await unsealRuntimeSecret({ keys, data: (await lab.deps()).data, log: (await lab.deps()).log });
      return { signature, secretBytes: secret.derive('pkiStoreIntegrity').length };
    } finally {
      await keys.close();
    }
  }

  /** The attacker's view after boot: a copied boot record, then both uses; each must be refused by the TPM itself. */
  async function expectTpmRefusesBoth(): Promise<void> {
    await copyFile(savedBootRecord, join(lab.runDir, 'boot.json'));
    const keys = await KeyService.open(await lab.deps());
    try {
      const signErr = await refusal(keys.signWithContractKey(sha256(message)));
      expect({ code: signErr.code, rc: signErr.details.rc }).toEqual({ code: 'TPM_POLICY_NOT_APPROVED', rc: '0x1C4' });
      const unsealErr = await refusal(unsealRuntimeSecret({ keys, data: (await lab.deps()).data, log: (await lab.deps()).log }));
      expect({ code: unsealErr.code, rc: unsealErr.details.rc }).toEqual({ code: 'TPM_POLICY_NOT_APPROVED', rc: '0x1C4' });
    } finally {
      await keys.close();
    }
  }

  /** A reboot into slot A with one byte of its root file system changed: the hook measures what is there. */
  async function bootTampered(): Promise<Uint8Array> {
    await lab.reboot('orderly');
    await lab.bootUpTo(bundle, { tamperedSlot: true });
    return sha256(await readFile(lab.slotFile));
  }

  beforeAll(async () => {
    lab = await TpmLab.create();
    record = (await lab.bootedVehicle()).record; // factory, v1 installed in slot A, measured, checked, first-boot completion
    bundle = join(lab.oemDir, 'v1.raucb');
    policy = parseSignedPolicy(JSON.parse(await readFile(join(lab.dataDir, DATA.release(1, 'signed-policy.json')), 'utf8')));
    await writeExport(lab.exportDir, backendExport(record));
    const contract = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    contractPub = contract.publicKey.export({ type: 'spki', format: 'pem' }) as string;
    const blob = await wrapContractKey({ contractKeyPem: contract.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, deviceExportDir: lab.exportDir });
    const keys = await KeyService.open(await lab.deps());
    await keys.importContractKey(blob);
    await keys.close();
    savedBootRecord = join(lab.base, 'attacker-saved-boot.json');
    await copyFile(join(lab.runDir, 'boot.json'), savedBootRecord);
  });
  afterAll(async () => {
    await lab?.close();
  });

  it('the good chain: the hook measures the installed rootfs image from zero, the check passes, the TPM signs and unseals', async () => {
    await lab.reboot('orderly');
    const report = await lab.boot(bundle);
    expect(report).toMatchObject({ version: 1, rootfsSha256: policy.rootfs.sha256, pcrValue: policy.pcrs.value, measurement: { by: 'initramfs', events: 1 } });
    // the value the OEM signed is exactly one extend of the manifest's image digest from zero
    expect(toHex(pcrAfterExtend(Buffer.from(policy.rootfs.sha256, 'hex')))).toBe(policy.pcrs.value);
    expect(toHex(await (await lab.driver()).pcrRead('sha256', 14))).toBe(policy.pcrs.value);
    const log = await readFile(lab.eventLog, 'utf8');
    expect(log).toMatch(new RegExp(`^# evcc-measure-log/1\\npcr=14 bank=sha256 event=rootfs digest=${policy.rootfs.sha256} before=${'0'.repeat(64)} size=whole read=ok source=\\S+rootfs\\.0\\.img\\n$`));
    const used = await useKeys();
    expect(cryptoVerify('sha256', message, { key: contractPub, dsaEncoding: 'ieee-p1363' }, used.signature)).toBe(true);
    expect(used.secretBytes).toBe(32);
  });

  it('the reproduced attack of the issue: tampered rootfs, then `tpm2_pcrextend 14:sha256=<good digest>`, a saved boot record copied in, `evcc tpm sign` → refused by the TPM', async () => {
    const tampered = await bootTampered();
    expect(toHex(await (await lab.driver()).pcrRead('sha256', 14))).toBe(toHex(pcrAfterExtend(tampered)));
    // the boot check names the tampered root file system
    const bootErr = await refusal(checkMeasuredBoot(await lab.deps(), { bundlePath: bundle, keyring: lab.bundleCert, eventLogPath: lab.eventLog }));
    expect(bootErr.code).toBe('BOOT_ROOTFS_MISMATCH');
    // root after boot: the public digest from the signed policy, extended exactly as in the issue
    await execa('tpm2_pcrextend', [`14:sha256=${policy.rootfs.sha256}`], { env: { TPM2TOOLS_TCTI: lab.swtpm.tcti } });
    expect(toHex(await (await lab.driver()).pcrRead('sha256', 14))).not.toBe(policy.pcrs.value);
    await copyFile(savedBootRecord, join(lab.runDir, 'boot.json'));
    const signed = await lab.cli(['tpm', 'sign', '--digest', toHex(sha256(message))], { tpm: true });
    expect(signed.exitCode).toBe(1);
    expect(signed.stderr).toMatch(/TPM_POLICY_NOT_APPROVED/);
    expect(signed.stderr).not.toMatch(/\n\s+at /); // typed, no stack
    expect(signed.stdout).toBe('');
    await expectTpmRefusesBoth();
    // and the check now also sees that something extended PCR 14 after the hook
    expect((await refusal(checkMeasuredBoot(await lab.deps(), { bundlePath: bundle, keyring: lab.bundleCert, eventLogPath: lab.eventLog }))).code).toBe('BOOT_EVENT_LOG_MISMATCH');
  });

  it('a forged event log claiming the good rootfs does not help: the replay differs from PCR 14', async () => {
    await bootTampered();
    await writeFile(lab.eventLog, `# evcc-measure-log/1\npcr=14 bank=sha256 event=rootfs digest=${policy.rootfs.sha256} before=${'0'.repeat(64)} size=whole read=ok source=/dev/mmcblk0p2\n`);
    await (await lab.driver()).pcrExtend('sha256', 14, Buffer.from(policy.rootfs.sha256, 'hex'));
    const err = await refusal(checkMeasuredBoot(await lab.deps(), { bundlePath: bundle, keyring: lab.bundleCert, eventLogPath: lab.eventLog }));
    expect(err.code).toBe('BOOT_EVENT_LOG_MISMATCH');
    await expectTpmRefusesBoth();
  });

  it('enumerated attacker sequences after the hook measured a tampered rootfs never reach the approved state', async () => {
    const good = new Uint8Array(Buffer.from(policy.rootfs.sha256, 'hex'));
    const approved = new Uint8Array(Buffer.from(policy.pcrs.value, 'hex'));
    const sequences: [string, Uint8Array[]][] = [
      ['nothing', []],
      ['the good digest', [good]],
      ['the good digest twice', [good, good]],
      ['the approved PCR value itself', [approved]],
      ['the zero digest, then the good digest', [new Uint8Array(32), good]],
    ];
    for (const [name, extends_] of sequences) {
      await bootTampered();
      const tpm = await lab.driver();
      for (const d of extends_) await tpm.pcrExtend('sha256', 14, d);
      expect(toHex(await tpm.pcrRead('sha256', 14)), name).not.toBe(policy.pcrs.value);
      await expectTpmRefusesBoth();
    }
  }, 180_000);

  it('generated attacker sequences (fast-check: good digest, approved value, tampered digest, random) never reach the approved state', async () => {
    const good = new Uint8Array(Buffer.from(policy.rootfs.sha256, 'hex'));
    const approved = new Uint8Array(Buffer.from(policy.pcrs.value, 'hex'));
    const digest = fc.oneof(fc.constant(good), fc.constant(approved), fc.uint8Array({ minLength: 32, maxLength: 32 }));
    await fc.assert(fc.asyncProperty(fc.array(digest, { maxLength: 4 }), fc.boolean(), async (extends_, alsoTheTampered) => {
      const tampered = await bootTampered();
      const tpm = await lab.driver();
      for (const d of alsoTheTampered ? [tampered, ...extends_] : extends_) await tpm.pcrExtend('sha256', 14, d);
      expect(toHex(await tpm.pcrRead('sha256', 14))).not.toBe(policy.pcrs.value);
      await expectTpmRefusesBoth();
    }), { numRuns: 10 });
  }, 180_000);

  it('a good boot extended afterwards is locked too, and the check says why', async () => {
    await lab.reboot('orderly');
    await lab.boot(bundle);
    await (await lab.driver()).pcrExtend('sha256', 14, new Uint8Array(randomBytes(32)));
    expect((await refusal(checkMeasuredBoot(await lab.deps(), { bundlePath: bundle, keyring: lab.bundleCert, eventLogPath: lab.eventLog }))).code).toBe('BOOT_EVENT_LOG_MISMATCH');
    await expectTpmRefusesBoth();
  });

  it('the hook refuses to let a boot continue unmeasured: no TPM → non-zero exit, no event log line', async () => {
    const eventLog = join(lab.base, 'unmeasured', 'measurements.log');
    const err = await refusal(runMeasureHook({ tcti: 'swtpm:host=127.0.0.1,port=1', root: lab.slotFile, eventLog }));
    expect(err.code).toBe('BOOT_MEASURE_FAILED');
    expect(err.message).toMatch(/refusing to boot an unmeasured root file system/);
    await expect(readFile(eventLog, 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a slot partition larger than its ext4 image: the hook measures exactly the image (length from the superblock), the digest RAUC\'s manifest names', async () => {
    const image = join(lab.base, 'rootfs.ext4');
    await execa('mkfs.ext4', ['-q', '-F', '-O', '64bit', '-b', '4096', image, '2048']); // 8 MiB file system
    const imageBytes = await readFile(image);
    const partition = join(lab.base, 'partition.img');
    await writeFile(partition, Buffer.concat([imageBytes, randomBytes(1 << 20)])); // bytes of an older, longer image behind it
    const eventLog = join(lab.base, 'ext4-boot', 'measurements.log');
    await lab.reboot('orderly');
    await runMeasureHook({ tcti: lab.swtpm.tcti, root: partition, eventLog });
    expect(await readFile(eventLog, 'utf8')).toContain(`digest=${toHex(sha256(imageBytes))} before=${'0'.repeat(64)} size=${imageBytes.length}(ext4) read=ok`);
    expect(toHex(await (await lab.driver()).pcrRead('sha256', 14))).toBe(toHex(pcrAfterExtend(sha256(imageBytes))));
  });

  it('a TPM that kept PCR 14 across the reboot (no _TPM_Init) is named by the check and locked by the TPM', async () => {
    await lab.reboot('orderly');
    await lab.boot(bundle);
    // the same boot's hook again, as after a warm reset that did not reset the TPM: PCR 14 was not zero
    await runMeasureHook({ tcti: lab.swtpm.tcti, root: lab.slotFile, eventLog: join(lab.base, 'warm', 'measurements.log') });
    const err = await refusal(checkMeasuredBoot(await lab.deps(), { bundlePath: bundle, keyring: lab.bundleCert, eventLogPath: join(lab.base, 'warm', 'measurements.log') }));
    expect(err.code).toBe('BOOT_EVENT_LOG_MISMATCH');
    expect(err.message).toMatch(/PCR was not zero when the initramfs measured/);
    await expectTpmRefusesBoth();
  });
});

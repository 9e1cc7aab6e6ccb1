import { execFile } from 'node:child_process';
import { createHash, verify as cryptoVerify, X509Certificate } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { describeWith, tool } from '../support/prereq.ts';
import { filesUnder } from '../support/files.ts';
import { verifySecurityLog } from '../../firmware/log/security-log.ts';

const run = promisify(execFile);

/** The README's main job, end to end as a user runs it: the CLI in its own process, no root, no hardware. */
async function benchSession(args: string[]): Promise<{ code: number; report: Record<string, any>; log: string[] }> {
  try {
    const { stdout, stderr } = await run('npx', ['tsx', 'bin/evcc.ts', 'bench-session', '--json', ...args], { timeout: 90_000 });
    return { code: 0, report: JSON.parse(stdout), log: stderr.split('\n') };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, report: e.stdout ? JSON.parse(e.stdout) : {}, log: (e.stderr ?? '').split('\n') };
  }
}

function indexOfLine(log: string[], re: RegExp): number {
  return log.findIndex((l) => re.test(l));
}

/** Every line found, and in this order. */
function expectInOrder(log: string[], res: RegExp[]): void {
  const steps = res.map((re) => indexOfLine(log, re));
  expect(res.filter((_, i) => steps[i]! < 0).map(String)).toEqual([]);
  expect([...steps].sort((a, b) => a - b)).toEqual(steps);
}


const kept: string[] = [];
afterAll(async () => {
  for (const d of kept) await rm(d, { recursive: true, force: true });
});

// The vehicle stage needs swtpm, tpm2-tools, rauc (and openssl for the bench OEM certificate): without them the
// main job runs TPM-less, which is not the product: skipped on a laptop, a FAILURE under CI.
describeWith([tool('swtpm'), tool('tpm2_startup'), tool('rauc'), tool('openssl')])('evcc bench-session (main job, vehicle TPM on swtpm)', () => {
  it('the whole story: TPM vehicle without a contract, SLAC, SDP, TLS + Solution C, ISO-2 CertificateInstallation (direct TPM import), DC PnC with the new key\'s Authorization verified by the charger, 20 → 80 %, SessionStop, A/B commit', async () => {
    const { code, report, log } = await benchSession(['--keep']);
    const dataDir = /data dir kept dataDir=(\S+)/.exec(log.find((l) => l.includes('data dir kept')) ?? '')?.[1];
    if (dataDir) kept.push(dataDir);
    expect(code, log.filter((l) => /ERROR|FAILED/.test(l)).join('\n')).toBe(0);
    expect(report).toMatchObject({ ok: true, state: 'Ended', protocol: 'iso2', payment: 'Contract', endReason: { code: 'SESSION_COMPLETED', orderly: true } });
    expect(report.link.evseMac).toBe('02:5e:cc:00:00:01'); // the nearer of the two simulated chargers
    expect(report.link.evses).toHaveLength(2);
    expect(report.channel).toMatchObject({ kind: 'tls', protocol: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES128-SHA256' });
    expect(report.channel.installedRoot.subject).toMatch(/V2G Root CA B/);
    // V2G_EVCC_CommunicationSetup_Timeout covers plug-in → SessionSetupRes, Solution C included.
    expect(report.setupMs).toBeLessThan(20_000);
    // The battery model charged to its target; the loop ran on CurrentDemand, paced, and the charger verified the
    // contract-key signature (AuthorizationRes OK only after xmldsig verification with the contract chain).
    expect(report.soc.start).toBe(20);
    expect(report.soc.end).toBeGreaterThanOrEqual(80);
    expect(report.energyWh).toBeGreaterThan(30_000);
    expect(report.messages).toMatchObject({ SessionSetupReq: 1, CertificateInstallationReq: 1, PaymentDetailsReq: 1, AuthorizationReq: 1, SessionStopReq: 1 });
    expect(report.messages.CertificateUpdateReq).toBeUndefined();
    expect(report.messages.CurrentDemandReq).toBeGreaterThan(5);
    // two TPM signatures: CertificateInstallationReq (provisioning key), AuthorizationReq (the new contract key)
    expect(report.session.effectTimes.sign.count).toBe(2);
    expect(report.session.effectTimes.installContract.count).toBe(1);

    // TPM outcome: PCR 14 holds exactly the initramfs hook's measurement of slot A's rootfs image (from zero, sha256).
    const tpm = report.tpm;
    expect(tpm.skipped).toBeUndefined();
    expect(tpm.release).toBe(2);
    const expectedPcr = createHash('sha256').update(Buffer.alloc(32)).update(Buffer.from(tpm.rootfsSha256, 'hex')).digest('hex');
    expect(tpm.pcr14).toBe(expectedPcr);
    expect(tpm.contractKey).toBe('signed');
    // The contract the session installed (the factory imported none): the CPS copied the provisioning certificate's
    // storage-key extension into it, and the key service holds its key under the id the install line names.
    const contractCert = new X509Certificate(tpm.contractCertificate);
    expect(contractCert.subject).toContain('CN=DEEVCC000000001');
    const installedKey = /KEYS: contract DEEVCC000000001 installed: key (\w+) imported into the TPM \(direct import\)/.exec(log.find((l) => /KEYS: contract \S+ installed: key/.test(l)) ?? '')?.[1];
    expect(installedKey).toBeDefined();
    expect(tpm.contractKeyId).toBe(installedKey);
    // A/B commit after the good session: the anti-rollback counter went from its provisioned value 1 to the release.
    expect({ from: tpm.counterFrom, to: tpm.counter }).toEqual({ from: '1', to: '2' });

    // Remote attestation: the OEM backend verified the TPM quote with the attestation key registered at production,
    // and its PCR 14 is the measurement of the signed release v2 — the value measured boot reported above.
    expect(report.attestation).toMatchObject({ verdict: 'trusted', release: 2, pcr14: expectedPcr, refused: 0, reason: { code: 'ATTEST_TRUSTED' }, claim: { version: 2, mode: 'approved' } });
    // The signed security log: uploaded, held by the backend through the vehicle's head, verified with the vehicle's
    // log key, and every entry the backend holds covered by a signed checkpoint (the stop checkpoint is the last).
    const sl = report.securityLog;
    expect(sl.skipped).toBeUndefined();
    expect(sl.uploaded).toBeGreaterThan(0);
    expect(sl).toMatchObject({ verified: true, chained: true, complete: true, unsignedCheckpoints: 0 });
    expect(sl.backendHeadSeq).toBe(sl.vehicleHeadSeq);
    expect(sl.uploaded).toBe(sl.backendHeadSeq + 1);
    expect(sl.signedCheckpoints).toBeGreaterThanOrEqual(2); // start and stop
    expect(sl.signedThrough).toBe(sl.backendHeadSeq);

    // The bench log tells the story in order, one line per step, in the engineer's format.
    expectInOrder(log, [
      /^\d\d:\d\d:\d\d\.\d{3} \[INFO\] BENCH: vehicle: swtpm started/,
      /\[INFO\] BENCH: vehicle: factory provisioning: srk, nv-counter, storage-key/,
      /\[INFO\] BENCH: vehicle: OEM release v2: RAUC bundle built and OEM-signed/,
      /\[INFO\] BENCH: vehicle: RAUC wrote the rootfs image of the signed bundle v2 into slot A/,
      /\[INFO\] BENCH: vehicle: initramfs: root file system \S+ measured into PCR 14/,
      /\[INFO\] BOOT: PCR 14 equals the initramfs event log: root file system \S+ measured/,
      /\[INFO\] BOOT: release v2 booted: signature, anti-rollback counter and signed state policy check out/,
      /\[INFO\] BENCH: vehicle: first-boot completion: oem-provisioning-key, runtime-secret/,
      /\[INFO\] BENCH: vehicle: factory V2G root A installed/,
      /\[INFO\] BENCH: vehicle: OEM provisioning certificate issued for the TPM provisioning key \(with the storage-key extension: direct import\); chain stored, no contract yet/,
      /\[INFO\] KEYS: vehicle trust opened: store verified with the TPM-derived key roots=1/, // the runtime's own trust, after the hand-over
      /\[INFO\] KEYS: no contract key yet: OEM provisioning certificate held, the contract comes by CertificateInstallation/,
      /\[INFO\] PILOT: state B/,
      /^\d\d:\d\d:\d\d\.\d{3} \[INFO\] SLAC: matching process successful/,
      /\[INFO\] EVCC: security policy: no contract yet \(release v2 approved\): PnC with CertificateInstallation/,
      /\[INFO\] SDP: SECC found at/,
      /\[ERROR\] TLS: connection failed: unknown root CA CN=V2G Root CA B/,
      /\[INFO\] OTA: V2G root installed/,
      /\[INFO\] TLS: connection established/,
      /\[INFO\] APPHAND: SupportedAppProtocol: urn:iso:15118:2:2013:MsgDef/,
      /\[INFO\] ISO2: ← SessionSetupRes/,
      /\[INFO\] EVCC: communication setup complete in \d+ ms/,
      /\[INFO\] ISO2: → PaymentServiceSelectionReq \(Contract, DC_extended, contract certificate installation\)/,
      /\[INFO\] ISO2: → CertificateInstallationReq \(\d root\(s\) listed\)/,
      /\[INFO\] SIM: CertificateInstallation: contract DEEVCC000000001 issued, key wrapped for direct TPM import/,
      /\[INFO\] ISO2: ← CertificateInstallationRes \(eMAID DEEVCC000000001\)/,
      /\[INFO\] KEYS: contract DEEVCC000000001 installed: key \w+ imported into the TPM \(direct import\)/,
      /\[INFO\] ISO2: → PaymentDetailsReq \(eMAID DEEVCC000000001, chain of 3\)/,
      /\[INFO\] ISO2: → AuthorizationReq \(PnC, GenChallenge [0-9a-f]{32}\)/,
      /\[INFO\] SIM: SECC ← AuthorizationReq \(signed\)/,
      /\[INFO\] ISO2: ← AuthorizationRes \(OK, Finished\)/,
      /\[INFO\] ISO2: → CableCheckReq/,
      /\[INFO\] ISO2: → PreChargeReq/,
      /\[INFO\] ISO2: → CurrentDemandReq/,
      /\[INFO\] ISO2: → PowerDeliveryReq \(Stop/,
      /\[INFO\] ISO2: → WeldingDetectionReq/,
      /\[INFO\] ISO2: ← SessionStopRes/,
      /\[INFO\] EVCC: session complete: ISO 15118-2, PnC, TLS, SoC 20 → 8\d/,
      /\[INFO\] BENCH: release v2 committed: anti-rollback counter 1 -> 2/,
    ]);
    expect(log.some((l) => /NO TPM/.test(l))).toBe(false);

    // Attestation on the OEM link: production registration, the verifier up before the vehicle's hello, challenge,
    // TPM quote, verdict; the bench's summary after the session. (Only causal orders: a line logged after a PUBACK
    // may follow the peer's line about the same message.)
    const attestSteps = {
      production: /\[INFO\] BENCH: OEM production: attestation key of \S+ registered from its provisioning export; OEM policy key set, signed release v2 added/,
      ready: /\[INFO\] OEM: attestation verifier subscribed .*cp=ATTEST-READY/,
      helloSent: /\[INFO\] OTA: attestation hello sent \(release 2, approved\) .*cp=OTA-ATTEST-HELLO/,
      hello: /\[INFO\] OEM: vehicle hello: challenging .*cp=ATTEST-HELLO/,
      challenge: /\[INFO\] OEM: attestation challenge sent .*cp=ATTEST-CHALLENGE(\s|$)/,
      quoted: /\[INFO\] OTA: attestation challenge answered with a TPM quote .*cp=OTA-ATTEST-QUOTED/,
      verdict: /\[INFO\] OEM: vehicle trusted: PCR 14 is the measurement of signed release v2 .*cp=ATTEST-VERDICT/,
      summary: /\[INFO\] BENCH: attestation: the OEM backend judged the vehicle trusted: PCR 14 [0-9a-f]{16}… is the measurement of signed release v2/,
    };
    expectInOrder(log, [attestSteps.production, attestSteps.ready, attestSteps.hello, attestSteps.challenge, attestSteps.verdict, /\[INFO\] BENCH: release v2 committed/, attestSteps.summary]);
    expectInOrder(log, [attestSteps.ready, attestSteps.helloSent, attestSteps.verdict]);
    expectInOrder(log, [attestSteps.challenge, attestSteps.quoted, attestSteps.summary]);
    // The security log: key registered at production, each upload stored (verified) by the backend before the
    // vehicle sees the receipt; after the session the stop checkpoint's upload, then the bench's summary.
    expectInOrder(log, [
      /\[INFO\] OEM: security-log key registered/,
      /\[INFO\] OEM: security log of \S+: \d+ entries stored through seq \d+.*cp=OEM-LOG-STORED/,
      /\[INFO\] OTA: security log: \d+ entries uploaded, the OEM backend holds it through seq \d+ .*cp=LOG-UPLOADED/,
    ]);
    expectInOrder(log, [
      /\[INFO\] EVCC: session complete/,
      new RegExp(`\\[INFO\\] OEM: security log of \\S+: \\d+ entries stored through seq ${sl.backendHeadSeq} .*cp=OEM-LOG-STORED`),
      /\[INFO\] BENCH: security log: \d+ entries uploaded, the OEM backend holds them through seq \d+, verified with the vehicle's log key/,
    ]);
    expectInOrder(log, [/\[INFO\] EVCC: session complete/, new RegExp(`\\[INFO\\] OTA: security log: \\d+ entries uploaded, the OEM backend holds it through seq ${sl.backendHeadSeq} .*cp=LOG-UPLOADED reason=checkpoint`)]);
    expect(log.filter((l) => /cp=(ATTEST-REFUSED|ATTEST-NOT-ANSWERING|OTA-ATTEST-FAILED|LOG-UPLOAD-FAILED|OEM-LOG-REFUSED|LOG-CHECKPOINT-UNSIGNED|LOG-CHECKPOINT-FAILED)/.test(l))).toEqual([]);

    // What the vehicle wrote: the store is tagged with the TPM-derived key, and no private key lies in clear.
    expect(dataDir).toBeDefined();
    // The backend's copy of the security log is the vehicle's file byte for byte, and verifies with the public log
    // key the vehicle holds (independently of the bench's own check).
    const vehicleLog = await readFile(join(dataDir!, 'data', 'log', 'security.jsonl'), 'utf8');
    const backendLog = (await filesUnder(join(dataDir!, 'oem-security-logs'))).find((f) => f.endsWith('.jsonl'));
    expect(backendLog).toBeDefined();
    expect(await readFile(backendLog!, 'utf8')).toBe(vehicleLog);
    expect(verifySecurityLog(vehicleLog, await readFile(join(dataDir!, 'data', 'keys', 'security-log.pub.pem'), 'utf8')))
      .toMatchObject({ entries: sl.uploaded, signedThrough: sl.backendHeadSeq, unsignedCheckpoints: [] });
    const store = JSON.parse(await readFile(join(dataDir!, 'data', 'pki', 'store.json'), 'utf8')) as Record<string, unknown>;
    expect(JSON.stringify(store)).toContain('hmac-sha256/tpm-sealed-v1');
    const vehicleFiles = [...(await filesUnder(join(dataDir!, 'data'))), ...(await filesUnder(join(dataDir!, 'vehicle', 'run')))];
    expect(vehicleFiles.length).toBeGreaterThan(10);
    const clear: string[] = [];
    for (const f of vehicleFiles) if ((await readFile(f)).includes('PRIVATE KEY')) clear.push(f);
    expect(clear).toEqual([]);
    // The installed contract key is there, TPM-wrapped only: its public half is the certificate's, its private blob
    // (TPM2B_PRIVATE under the storage key) is no PEM/PKCS#8 key.
    const contractDir = join(dataDir!, 'data', 'keys', 'contract');
    expect((await readFile(join(contractDir, 'active'), 'utf8')).trim()).toBe(installedKey);
    expect((await readFile(join(contractDir, `${installedKey}.pub.pem`), 'utf8')).trim())
      .toBe(contractCert.publicKey.export({ type: 'spki', format: 'pem' }).toString().trim());
    const wrapped = await readFile(join(contractDir, `${installedKey}.priv`));
    expect(wrapped.readUInt16BE(0)).toBe(wrapped.length - 2); // a TPM2B (size-prefixed), not a DER/PKCS#8 key
    expect(wrapped.includes('PRIVATE KEY')).toBe(false);
    // The scan can fail: the bench OEM's own (off-vehicle) bundle key is a PEM private key.
    expect((await readFile(join(dataDir!, 'vehicle', 'oem', 'bundle.key.pem'))).includes('PRIVATE KEY')).toBe(true);
  });

  it('without the OEM backend the unknown root is a typed failure, never a downgrade; the contract key stays unused and nothing is committed', async () => {
    const { code, report, log } = await benchSession(['--no-ota']);
    expect(code).toBe(1);
    expect(report.state).toBe('Failed');
    expect(report.endReason.code).toBe('TLS_UNKNOWN_ROOT');
    expect(log.some((l) => /APPHAND/.test(l))).toBe(false);
    expect(report.tpm).toMatchObject({ release: 2, contractKey: 'unused' });
    expect(report.tpm.counter).toBeUndefined();
    expect(indexOfLine(log, /\[WARN\] BENCH: vehicle: session did not complete: release v2 NOT committed/)).toBeGreaterThan(0);
    expect(log.some((l) => /committed: anti-rollback counter/.test(l))).toBe(false);
    expect(report.attestation).toEqual({ skipped: '--no-ota: no OEM link' });
    expect(report.securityLog.skipped).toMatch(/^--no-ota: no OEM link/);
  });

  it('degraded: a tampered root file system → the initramfs measures it, the boot check and the TPM refuse → the session still charges with EIM over TLS (roots verified by their OEM approvals), the contract is never used, and the report says why', async () => {
    const { code, report, log } = await benchSession(['--tampered-bundle', '--charger-pki', 'a']);
    expect(code, log.filter((l) => /ERROR|FAILED/.test(l)).join('\n')).toBe(0);
    expect(report).toMatchObject({ ok: true, protocol: 'iso2', payment: 'ExternalPayment', channel: { kind: 'tls' }, security: { pnc: false, degraded: { code: 'KEYS_NOT_BOOTED' } } });
    expect(report.soc.end).toBeGreaterThanOrEqual(80);
    expect(report.session.effectTimes.sign).toBeUndefined();
    expect(report.tpm).toMatchObject({ contractKey: 'unused', bootRefused: { code: 'BOOT_ROOTFS_MISMATCH', message: expect.stringMatching(/not the rootfs image of the installed release v2/) } });
    expect(report.tpm.counter).toBeUndefined();
    // the same initramfs hook measured slot A at both boots: the factory's good one and the tampered reboot
    expect(log.filter((l) => /\[INFO\] BENCH: vehicle: initramfs: root file system \S+ measured into PCR 14/.test(l))).toHaveLength(2);
    expectInOrder(log, [
      /\[WARN\] BENCH: vehicle: slot A's root file system modified after install/,
      /\[WARN\] BENCH: vehicle: rebooted into the tampered bundle, measured boot FAILED \(BOOT_ROOTFS_MISMATCH\)/,
      /\[WARN\] KEYS: vehicle trust degraded \(KEYS_NOT_BOOTED\): 1 V2G root\(s\) verified by their OEM approval/,
      /\[WARN\] EVCC: security policy: key service refused \(KEYS_NOT_BOOTED\): degraded mode, EIM only/,
      /\[INFO\] TLS: connection established/,
      /\[INFO\] ISO2: → PaymentServiceSelectionReq \(ExternalPayment/,
      /\[INFO\] ISO2: ← SessionStopRes/,
      /\[INFO\] EVCC: session complete: .*\(degraded: KEYS_NOT_BOOTED\)/,
      /\[WARN\] BENCH: vehicle: no key service in this state: release v2 NOT committed/,
    ]);
    // The OEM backend sees it too: the quote (the attestation key needs no approved state) proves a PCR 14 that is not
    // the signed release's, which the vehicle still claims; its security log arrives intact, but unsigned.
    expect(report.attestation).toMatchObject({ verdict: 'tampered', reason: { code: 'ATTEST_ROOTFS_NOT_RELEASED' }, claim: { version: 2, mode: 'degraded', reason: 'KEYS_NOT_BOOTED' } });
    expect(report.attestation.pcr14).toMatch(/^[0-9a-f]{64}$/);
    expect(report.attestation.pcr14).not.toBe(report.tpm.pcr14); // the factory boot's (good) measurement
    expect(report.securityLog).toMatchObject({ chained: true, complete: true, verified: false, signedCheckpoints: 0, unsignedReason: 'KEYS_NOT_BOOTED' });
    expect(report.securityLog.uploaded).toBeGreaterThan(0);
    expect(indexOfLine(log, /\[WARN\] OEM: vehicle tampered: the root file system that booted \([0-9a-f]{16}…\) is not the one of signed release v2 .*cp=ATTEST-VERDICT/)).toBeGreaterThan(0);
  });

  it('DIN SPEC 70121 against a DIN-only charger without TLS: plain TCP, EIM, the contract never used, charged to SessionStop', async () => {
    const { code, report, log } = await benchSession(['--protocol', 'din']);
    expect(code, log.filter((l) => /ERROR|FAILED/.test(l)).join('\n')).toBe(0);
    expect(report).toMatchObject({ ok: true, protocol: 'din', payment: 'ExternalPayment', channel: { kind: 'tcp' } });
    expect(report.channel.plan.pnc).toBe(false);
    expect(report.soc.end).toBeGreaterThanOrEqual(80);
    expect(indexOfLine(log, /\[WARN\] EVCC: channel plan: no TLS: plain TCP, EIM only; offered ISO 15118-2 and DIN SPEC 70121 \(PnC not used: it needs TLS\)/)).toBeGreaterThan(0);
    expect(log.some((l) => /→ AuthorizationReq|PaymentDetailsReq/.test(l))).toBe(false);
    expect(report.session.effectTimes.sign).toBeUndefined();
  });
});

describe('evcc bench-session --no-tpm (laptop path)', () => {
  it('charges with EIM only, says loudly that there is no key service, and reports tpm.skipped', async () => {
    const { code, report, log } = await benchSession(['--no-tpm']);
    expect(code, log.filter((l) => /ERROR|FAILED/.test(l)).join('\n')).toBe(0);
    expect(report).toMatchObject({ ok: true, protocol: 'iso2', payment: 'ExternalPayment', security: { pnc: false, degraded: { code: 'KEYS_DISABLED' } } });
    expect(report.tpm).toEqual({ skipped: '--no-tpm' });
    expect(report.attestation).toEqual({ skipped: '--no-tpm' });
    expect(report.securityLog).toEqual({ skipped: '--no-tpm' });
    expect(indexOfLine(log, /\[WARN\] BENCH: NO TPM \(--no-tpm\): no key service/)).toBeGreaterThanOrEqual(0);
    expect(log.some((l) => /BENCH: vehicle:|BOOT:|KEYS: runtime secret/.test(l))).toBe(false);
    expect(indexOfLine(log, /\[INFO\] ISO2: ← SessionStopRes/)).toBeGreaterThan(0);
  });
});

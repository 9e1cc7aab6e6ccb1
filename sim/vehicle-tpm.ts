/**
 * The bench vehicle's security core on swtpm, for `evcc bench-session` (the main job): what a factory, the OEM and a
 * mobility operator do to one vehicle before it can charge with Plug & Charge (firmware/keys/README.md, "Factory /
 * bench sequence"; ARCHITECTURE.md §3 steps 1 and 7), done in one process with the product's own code:
 *
 *   swtpm (free ports, temp state) → factory provisioning (SRK, storage key, NV anti-rollback counter; export for
 *   the backends) → OEM release vN (RAUC bundle with a rootfs image, signed with bench OEM material made on the fly;
 *   signed state policy naming that image's measurement) → RAUC writes the image into the file-backed slot A →
 *   boot: the initramfs hook (boot/initramfs/evcc-measure-rootfs, the image's own script) measures slot A into
 *   PCR 14 → `evcc boot` check (event log replayed against PCR 14, bundle signature, rootfs = release image,
 *   anti-rollback counter, ticket) → first-boot completion (OEM provisioning key, sealed runtime secret) →
 *   openVehicleTrust (certificate store under the TPM-derived key, factory root A with the OEM's approved-V2G-root
 *   statement; tagged OEM backend key, the same key as the release ships) → MO wraps the contract key for this
 *   vehicle's storage key → direct import → arm() (`contract: 'factory-import'`), or the OEM provisioning certificate
 *   with the storage-key extension and no contract yet (`contract: 'certificate-installation'`: the first PnC session
 *   installs one).
 * `reboot({ bundle: 'tampered' })` then power-cycles the vehicle with a tampered root file system in slot A (a byte of
 * the installed image changed, as a root attacker or a tampered bundle written past RAUC leaves it): the hook measures
 * what is there, the check fails (BOOT_ROOTFS_MISMATCH), and the trust reopens in degraded mode (roots verified by
 * their OEM approvals only, contract key locked) — the EIM-only vehicle.
 *
 * Only the TPM (swtpm), the slot partition (a file) and the OEM/MO roles are simulated; every vehicle-side step —
 * the initramfs hook included — is the product's code. Each step
 * writes one BENCH line (`vehicle: …`); the product code underneath logs its own lines as on the device.
 */
import { createHash, generateKeyPairSync, randomBytes, verify as cryptoVerify, X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { commitRelease } from '../boot/commit.ts';
import { checkMeasuredBoot, type BootReport } from '../boot/measured-boot.ts';
import { runMeasureHook } from '../boot/measure-hook.ts';
import { buildBundle } from '../deploy/bundle/build.ts';
import { wrapContractKey } from '../deploy/mo/wrap.ts';
import { approveRoot } from '../deploy/oem-backend/approvals.ts';
import type { AnswerSigner } from '../deploy/oem-backend/signer.ts';
import { createSignedPolicy } from '../deploy/oem/release.ts';
import { EvccError } from '../core/errors.ts';
import { KeyService } from '../firmware/keys/key-service.ts';
import { backendExport, provisionTpm } from '../firmware/keys/provision.ts';
import { openVehicleTrust, openVehicleTrustOrDegraded, type OpenedVehicleTrust } from '../firmware/keys/vehicle-trust.ts';
import type { Logger, Subsystem } from '../core/logger.ts';
import type { BackendTrust } from '../firmware/ota/signing.ts';
import type { TestPki } from '../firmware/pki/generate.ts';
import type { CertificateStore } from '../firmware/pki/store.ts';
import { FsStore } from '../hal/store/fs-store.ts';
import { Swtpm } from '../hal/tpm/swtpm.ts';
import { Tpm2Tools } from '../hal/tpm/tpm2-tools.ts';
import { installToFileSlot } from '../hal/rauc/bundle.ts';
import { issueProvisioningCertificate } from './cps/provisioning.ts';

const fromHex = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));

/**
 * Debian tools the TPM stage runs (swtpm, tpm2-tools, rauc + unsquashfs for bundles and the slot, openssl for the bench
 * OEM bundle certificate, sha256sum/od for the initramfs hook).
 */
export const VEHICLE_TPM_TOOLS = ['swtpm', 'tpm2_startup', 'rauc', 'unsquashfs', 'openssl', 'sha256sum', 'od'] as const;

/** The tools of VEHICLE_TPM_TOOLS this machine lacks (empty: the TPM stage can run). */
export function missingVehicleTpmTools(): string[] {
  return VEHICLE_TPM_TOOLS.filter((t) => {
    try {
      execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' });
      return false;
    } catch {
      return true;
    }
  });
}

export interface BenchVehicleTpmOptions {
  /** Dir for swtpm state, the vehicle's data and run dirs, and the OEM/MO bench material (absolute). */
  baseDir: string;
  /** The vehicle's persistent data dir (certificate store, TPM-wrapped blobs). */
  dataDir: string;
  pki: TestPki;
  /**
   * The OEM backend's answer-signing public key, installed into the vehicle and tagged with the TPM-derived key, and
   * shipped in the bench release (the key a degraded vehicle verifies its roots' OEM approvals with).
   */
  backendKeyPem?: string;
  /**
   * The OEM backend's signing key: signs the approved-V2G-root statement of the factory root (the OEM's part at
   * production). Without it the factory root is installed unapproved: trusted in full mode only, not when degraded.
   */
  approvalSigner?: AnswerSigner;
  /**
   * Release the OEM ships to this vehicle. Provisioning leaves the NV counter at 1 (a fresh TPM NV counter starts at
   * the TPM's highest counter value and must be incremented once before it can be read), so only a release above 1
   * lets the A/B commit visibly raise it.
   */
  releaseVersion: number;
  /**
   * How the vehicle gets its contract. 'factory-import' (default, what the TPM tests build on): the MO wraps a
   * contract key for this vehicle's storage key, the factory imports it and stores its chain.
   * 'certificate-installation' (the main job): the OEM issues the provisioning certificate (with the storage-key
   * extension) for the TPM provisioning key and no contract is pre-imported — the first PnC session installs one by
   * ISO 15118-2 CertificateInstallation (direct TPM import).
   */
  contract?: 'certificate-installation' | 'factory-import';
  log: (sub: Subsystem) => Logger;
}

export interface ContractProof {
  /** SHA-256 digest signed (hex). */
  digest: string;
  /** Raw r||s signature, base64. */
  signature: string;
  verified: boolean;
  /** Wall time of the signature through the pre-armed policy session (ms). */
  signMs: number;
  /** tpm2-tools processes on the critical path of that signature (1 when pre-armed). */
  criticalPathProcesses: number | undefined;
}

export interface VehicleTpmOutcome {
  /** Wall time of the whole vehicle stage, swtpm start to armed contract key (ms). */
  stageMs: number;
  boot: { version: number; pcr14: string; bundleSha256: string; rootfsSha256: string };
  /** The factory-imported contract key and its MO certificate (subject, PEM); absent with 'certificate-installation'. */
  contractKey?: { id: string; certificate: string; certificatePem: string };
  /** The OEM provisioning certificate issued at the factory ('certificate-installation'), PEM. */
  provisioningCertificatePem?: string;
  proof?: ContractProof;
  counter?: { from: string; to: string; proof: string };
  /** Why the last reboot's boot check refused the approved state (absent after a good boot). */
  bootRefused?: { code: string; message: string };
}

export interface BenchVehicleTpm {
  /** The vehicle's trust as last opened: full after the factory, degraded after a reboot into a tampered bundle. */
  readonly trust: OpenedVehicleTrust;
  /** trust.store: the TPM-derived key opened it (full), or the OEM approvals alone (degraded). */
  readonly store: CertificateStore;
  /** The OEM backend key as the vehicle trusts it (tagged, or the release's when degraded; undefined when none was given). */
  readonly backendTrust: BackendTrust | undefined;
  readonly keys: KeyService;
  outcome: VehicleTpmOutcome;
  /**
   * Signs `message`'s SHA-256 with the contract key (pre-armed session) and verifies it with the factory-imported
   * contract certificate (KEYS_NO_CONTRACT_KEY without one).
   */
  proveContractKey(message: Uint8Array): Promise<ContractProof>;
  /** `evcc boot commit`: self-test through the TPM, then the NV anti-rollback counter raised to the running release. */
  commit(): Promise<{ version: number; from: string; to: string; proof: string }>;
  /**
   * End of the factory stage: closes the sim's key service and TPM driver and says where the runtime finds the
   * vehicle (TCTI, data and run dirs, the release's OEM backend key), so the bench opens the trust exactly as
   * `evcc run` does on the device.
   */
  handOver(): Promise<{ tcti: string; dataDir: string; runDir: string; releaseBackendKey?: { pem: string; origin: string } }>;
  /**
   * Power-cycles the vehicle (orderly TPM shutdown, run dir emptied like a tmpfs) and boots `bundle`: the OEM
   * release again, or a tampered copy that fails measured boot (BUNDLE_INVALID, logged). Reopens the trust as the
   * runtime does: full, or degraded with the TPM's reason. Returns the new trust (also `trust`/`store`/`keys`).
   */
  reboot(o: { bundle: 'release' | 'tampered' }): Promise<OpenedVehicleTrust>;
  close(): Promise<void>;
}

const sha256 = (b: Uint8Array): Uint8Array => new Uint8Array(createHash('sha256').update(b).digest());

export async function startBenchVehicleTpm(o: BenchVehicleTpmOptions): Promise<BenchVehicleTpm> {
  const bench = o.log('BENCH');
  const step = async <T>(what: (r: T, ms: number) => [Record<string, unknown>, string], fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const r = await fn();
    const ms = Math.round(performance.now() - t0);
    const [fields, msg] = what(r, ms);
    bench.info({ ...fields, ms }, `vehicle: ${msg}`);
    return r;
  };
  const oemDir = join(o.baseDir, 'oem');
  const moDir = join(o.baseDir, 'mo');
  const runDir = join(o.baseDir, 'run');
  const slotsDir = join(o.baseDir, 'slots');
  const raucDir = join(o.baseDir, 'rauc');
  const initramfsRun = join(o.baseDir, 'boot-run');
  for (const dir of [slotsDir, raucDir, initramfsRun]) await mkdir(dir, { recursive: true, mode: 0o700 });
  await mkdir(oemDir, { recursive: true, mode: 0o700 });
  await mkdir(moDir, { recursive: true, mode: 0o700 });
  await mkdir(runDir, { recursive: true, mode: 0o700 });
  const closers: (() => Promise<unknown>)[] = [];
  const close = async () => {
    for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
  };
  const stageStart = performance.now();
  try {
    const swtpm = await step((s) => [{ tcti: s.tcti, pid: s.pid }, `swtpm started (${s.tcti})`],
      () => Swtpm.start({ stateDir: join(o.baseDir, 'swtpm-state'), logFile: join(o.baseDir, 'swtpm.log') }));
    closers.push(() => swtpm.stop());
    const tpm = await Tpm2Tools.open({ tcti: swtpm.tcti, runDir, log: o.log('TPM') });
    let driver = tpm; // replaced by each reboot (a new runtime process has its own driver)
    closers.push(() => driver.close());
    const data = await FsStore.open(o.dataDir);
    const run = await FsStore.open(runDir);
    const deps = { tpm, data, run, log: o.log('KEYS') };

    // --- OEM bench material, made on the fly (never on the vehicle) ------------------------------------------------
    const policyKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const oemPolicyKeyPem = policyKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const oemPolicyPubPem = policyKeys.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const bundleCert = join(oemDir, 'bundle.cert.pem');
    const bundleKey = join(oemDir, 'bundle.key.pem');

    // --- factory ---------------------------------------------------------------------------------------------------
    const exportDir = join(o.baseDir, 'export');
    await step((r) => [{ created: r.created, storageKey: r.record.storageKey.name }, `factory provisioning: ${r.created.join(', ')}; export for the OEM/MO backends written`], async () => {
      const r = await provisionTpm(deps, { oemPolicyKeyPem: oemPolicyPubPem });
      await mkdir(exportDir, { recursive: true });
      for (const [name, content] of Object.entries(backendExport(r.record))) await writeFile(join(exportDir, name), content, { mode: 0o644 });
      return r;
    });

    // --- OEM release -------------------------------------------------------------------------------------------------
    const bundlePath = join(oemDir, `v${o.releaseVersion}.raucb`);
    const policy = await step((p) => [{ version: p.version, pcr14: p.pcrs.value, rootfsSha256: p.rootfs.sha256, bundleSha256: p.bundle.sha256 }, `OEM release v${p.version}: RAUC bundle built and OEM-signed (rootfs image ${p.rootfs.sha256.slice(0, 16)}…), state policy signed (PCR 14 ${p.pcrs.value.slice(0, 16)}… = that image measured from zero, counter ≤ ${p.version})`], async () => {
      await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', bundleKey,
        '-out', bundleCert, '-subj', '/CN=EVCC bench OEM bundle signing', '-days', '30'], { stdin: 'ignore' });
      const image = join(oemDir, `v${o.releaseVersion}-rootfs.img`);
      await writeFile(image, randomBytes(64 * 1024));
      await buildBundle({ images: { rootfs: image }, version: o.releaseVersion, compatible: 'evcc-bench', cert: bundleCert, key: bundleKey, out: bundlePath });
      return createSignedPolicy({ bundlePath, keyring: bundleCert, policyKeyPem: oemPolicyKeyPem });
    });

    // --- vehicle: slot A flashed with the release, first boot (initramfs hook → boot check), first-boot completion ----
    // The slot partition is a file (RAUC `type=raw`); /run of the boot is a dir emptied at each power cycle, where the
    // hook leaves its event log as the initramfs does before switch_root. PCR 14 is still zero here: nothing in the
    // factory image measures into it, exactly as after the power cycle into slot A.
    const slotFile = join(slotsDir, 'rootfs.0.img');
    const eventLog = join(initramfsRun, 'evcc-boot', 'measurements.log');
    const installSlot = () => step((i) => [{ slot: 'rootfs.0', rootfsSha256: i.sha256, size: i.size }, `RAUC wrote the rootfs image of the signed bundle v${o.releaseVersion} into slot A (file-backed, ${i.size} bytes)`],
      () => installToFileSlot({ bundlePath, keyring: bundleCert, slotFile, workDir: raucDir }));
    const measureSlot = () => step((h) => [{ pcr: 14, hook: 'evcc-measure-rootfs' }, `initramfs: ${h.message.replace(/^evcc-measure-rootfs: /, '')}`],
      () => runMeasureHook({ tcti: swtpm.tcti, root: slotFile, eventLog }));
    const checkBoot = (bootDeps: typeof deps) => step((b) => [{ version: b.version, pcr14: b.pcrValue, counter: b.counter, ticket: b.ticket }, `boot check: PCR 14 (${b.pcrValue.slice(0, 16)}…) equals the initramfs event log, bundle v${b.version} signature verified, slot A holds its rootfs image, policy ticket ${b.ticket}`],
      () => checkMeasuredBoot({ ...bootDeps, log: o.log('BOOT') }, { bundlePath, keyring: bundleCert, policy, eventLogPath: eventLog }));
    await installSlot();
    await measureSlot();

    const boot: BootReport = await checkBoot(deps);
    // Ends with the hierarchy set-up (TPM.md §8): owner policy, owner/endorsement/lockout auth escrowed to the OEM's key.
    const hierarchyEscrowKeyPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    await step((r) => [{ created: r.created }, `first-boot completion: ${r.created.join(', ')} created under the storage key`],
      () => provisionTpm(deps, { oemPolicyKeyPem: oemPolicyPubPem, hierarchyEscrowKeyPem }));

    // --- runtime start: trust unsealed through the OEM-signed state -----------------------------------------------
    // The release ships the OEM backend key in its (read-only, measured) root file system; the bench release has no
    // real root file system, so the sim hands the same key in as the release's.
    const releaseBackendKey = o.backendKeyPem ? { pem: o.backendKeyPem, origin: `bench release v${o.releaseVersion}` } : undefined;
    const trustOptions = releaseBackendKey ? { releaseBackendKey } : {};
    let keys = await KeyService.open(deps, { reclaim: true });
    closers.push(() => keys.close());
    const full = await step((t) => [{ roots: t.store.rootCount }, 'trust unsealed through the OEM-signed state: certificate store verified with the TPM-derived key'],
      () => openVehicleTrust({ keys, data, log: o.log('KEYS') }, trustOptions));
    let trust: OpenedVehicleTrust = full;
    const approval = o.approvalSigner ? approveRoot(o.approvalSigner, o.pki.a.root.der) : undefined;
    await step(() => [{ source: 'factory', approved: approval !== undefined }, approval
      ? 'factory V2G root A installed with the OEM\'s approved-V2G-root statement (and tagged with the TPM-derived key)'
      : 'factory V2G root A installed WITHOUT an OEM approval (tagged with the TPM-derived key only: not trusted in degraded mode)'],
    () => full.store.installRoot(o.pki.a.root.der, { source: 'factory', ...(approval ? { approval } : {}) }));
    let backendTrust: BackendTrust | undefined;
    if (o.backendKeyPem) {
      const pem = o.backendKeyPem;
      backendTrust = await step((b) => [{ keyId: b.keyId }, `OEM backend key ${b.keyId} installed and tagged with the TPM-derived key`], () => full.installBackendKey(pem));
    }

    let contractKey: VehicleTpmOutcome['contractKey'];
    let provisioningCertificatePem: string | undefined;
    if ((o.contract ?? 'factory-import') === 'factory-import') {
      // --- mobility operator: direct import of the contract key -------------------------------------------------------
      const contract = o.pki.mo.contract;
      const blobPath = join(moDir, 'contract.import.json');
      await step(() => [{ contract: contract.cert.subject }, `MO wrapped the contract key (${contract.cert.subject.split(',')[0]}) for this vehicle's storage key`], async () => {
        const blob = await wrapContractKey({ contractKeyPem: contract.keyPem, deviceExportDir: exportDir });
        await writeFile(blobPath, JSON.stringify(blob), { mode: 0o644 });
      });
      const imported = await step((k) => [{ key: k.id }, `contract key ${k.id} imported into the TPM (direct import, bound to the OEM state policy)`],
        async () => keys.importContractKey(new Uint8Array(await readFile(blobPath))));
      const certPublic = new X509Certificate(contract.pem).publicKey.export({ type: 'spki', format: 'pem' }).toString();
      if (certPublic !== imported.publicKeyPem) throw new EvccError('KEYS_BLOB_MALFORMED', 'imported contract key differs from the contract certificate');
      // The contract chain next to its key (store id = key id): PaymentDetailsReq presents it.
      await full.store.putContractChain(imported.id, [contract.der, o.pki.mo.sub2.der, o.pki.mo.sub1.der]);
      await step(() => [{ key: imported.id }, 'contract key armed (policy session ready before the challenge)'], () => keys.arm());
      contractKey = { id: imported.id, certificate: contract.cert.subject, certificatePem: contract.pem };
    } else {
      // --- OEM: provisioning certificate for the TPM-held provisioning key; the contract comes in the session ------
      // The storage-key extension (storage key public area and policy A, from the provisioning record the backend
      // export carries) tells the CPS/MO to wrap the contract key for direct import into this TPM.
      const record = keys.provisioning;
      if (!record.oemProvisioningKey) throw new EvccError('KEYS_NO_PROVISIONING_KEY', 'first-boot completion left no OEM provisioning key');
      const publicKeyPem = record.oemProvisioningKey.publicKeyPem;
      const cert = await step((c) => [{ subject: new X509Certificate(c.pem).subject.split('\n')[0] }, `OEM provisioning certificate issued for the TPM provisioning key (with the storage-key extension: direct import); chain stored, no contract yet (CertificateInstallation in the first PnC session)`], async () => {
        const c = await issueProvisioningCertificate({
          pki: o.pki, publicKeyPem,
          storageKey: { storageKeyPublic: fromHex(record.storageKey.public), keysPolicy: fromHex(record.policies.keys) },
        });
        await full.store.setOemProvisioningChain([c.der, o.pki.oem.sub2.der, o.pki.oem.sub1.der]);
        return c;
      });
      provisioningCertificatePem = cert.pem;
    }

    const outcome: VehicleTpmOutcome = {
      stageMs: Math.round(performance.now() - stageStart),
      boot: { version: boot.version, pcr14: boot.pcrValue, bundleSha256: boot.bundleSha256, rootfsSha256: boot.rootfsSha256 },
      ...(contractKey ? { contractKey } : {}),
      ...(provisioningCertificatePem ? { provisioningCertificatePem } : {}),
    };
    let slotTampered = false;
    const reboot = async (r: { bundle: 'release' | 'tampered' }): Promise<OpenedVehicleTrust> => {
      await keys.close().catch(() => undefined);
      const ctl = await Tpm2Tools.open({ tcti: swtpm.tcti, runDir: join(o.baseDir, 'ctl') });
      try {
        await swtpm.reboot('orderly', (t) => ctl.shutdown(t));
      } finally {
        await ctl.close().catch(() => undefined);
      }
      await driver.close().catch(() => undefined);
      for (const dir of [runDir, initramfsRun]) {
        for (const e of await readdir(dir)) await rm(join(dir, e), { recursive: true, force: true }); // tmpfs
      }
      driver = await Tpm2Tools.open({ tcti: swtpm.tcti, runDir, log: o.log('TPM') });
      const bootDeps = { tpm: driver, data, run, log: o.log('KEYS') };
      if (r.bundle === 'tampered') {
        // A root attacker's change to the installed root file system (or a tampered bundle's image written past
        // RAUC): one byte of slot A differs from the signed image.
        const bytes = await readFile(slotFile);
        bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0x01;
        await writeFile(slotFile, bytes);
        slotTampered = true;
        bench.warn({ slot: 'rootfs.0' }, 'vehicle: slot A\'s root file system modified after install (one byte of the signed image changed)');
      } else if (slotTampered) {
        await installSlot();
        slotTampered = false;
      }
      try {
        await measureSlot();
        const b = await checkBoot(bootDeps);
        delete outcome.bootRefused;
        bench.info({ version: b.version, pcr14: b.pcrValue }, `vehicle: rebooted, measured boot of release v${b.version} succeeded`);
      } catch (err) {
        const code = err instanceof EvccError ? err.code : 'UNKNOWN';
        outcome.bootRefused = { code, message: (err as Error).message };
        bench.warn({ bundle: r.bundle, code, reason: (err as Error).message }, `vehicle: rebooted into the ${r.bundle} bundle, measured boot FAILED (${code}): no approved state for this boot — ${(err as Error).message}`);
      }
      keys = await KeyService.open(bootDeps, { reclaim: true }); // closed by the closer registered at start
      trust = await openVehicleTrustOrDegraded({ keys, data, log: o.log('KEYS') }, trustOptions);
      backendTrust = trust.backendTrust;
      bench.info({ mode: trust.mode, roots: trust.store.rootCount, ...(trust.mode === 'degraded' ? { reason: trust.reason.code } : {}) },
        trust.mode === 'full' ? 'vehicle: trust reopened in full mode (TPM-derived store key)' : `vehicle: trust reopened in DEGRADED mode (${trust.reason.code}): V2G roots verified by their OEM approvals only, EIM only`);
      return trust;
    };
    return {
      get trust() { return trust; },
      get store() { return trust.store; },
      get backendTrust() { return backendTrust; },
      get keys() { return keys; },
      outcome,
      reboot,
      async proveContractKey(message) {
        const digest = sha256(message);
        const t0 = performance.now();
        if (!contractKey) throw new EvccError('KEYS_NO_CONTRACT_KEY', 'no factory-imported contract key to prove');
        const certificatePem = contractKey.certificatePem;
        const signature = await keys.signWithContractKey(digest);
        const signMs = Math.round((performance.now() - t0) * 10) / 10;
        const status = await keys.status();
        const verified = cryptoVerify('sha256', message, { key: new X509Certificate(certificatePem).publicKey, dsaEncoding: 'ieee-p1363' }, signature);
        const proof: ContractProof = {
          digest: Buffer.from(digest).toString('hex'), signature: Buffer.from(signature).toString('base64'), verified, signMs,
          criticalPathProcesses: status.lastSignCriticalPathProcesses,
        };
        outcome.proof = proof;
        return proof;
      },
      async commit() {
        const r = await commitRelease({ tpm: driver, data, run, log: o.log('BOOT'), keys });
        outcome.counter = { from: r.from, to: r.to, proof: r.proof };
        return r;
      },
      async handOver() {
        // The factory is done: its key service and TPM driver go, the runtime (a new process on the device) opens
        // its own on the same TPM, data dir and run dir. swtpm keeps running until close().
        await keys.close().catch(() => undefined);
        await driver.close().catch(() => undefined);
        return { tcti: swtpm.tcti, dataDir: o.dataDir, runDir, ...(releaseBackendKey ? { releaseBackendKey } : {}) };
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

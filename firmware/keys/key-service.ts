import { createPublicKey, randomBytes, verify as cryptoVerify } from 'node:crypto';
import { z } from 'zod';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { FileStore } from '../../hal/store/types.ts';
import type { Auth, HierarchyState, KeyBlob, KeyRef, KeyTemplate, PolicySession, PolicyStep, SaltKey, Tpm } from '../../hal/tpm/types.ts';
import {
  contractKeyPublic, decodeImportBlob, eccPublicPem, fromDirectTransport, objectName, parseEccPublic, privateScalarOf, wrapForImport,
  type DirectTransport, type ImportBlob,
} from './duplicate.ts';
import { derToRaw } from './ecdsa.ts';
import { checkUncompressedPoint, eccPointOfUncompressed, isoDecryptPrivateKey, isoKdf, zxOfEccPoint } from './iso-key-transport.ts';
import { BootState, DATA, parseJson, ProvisioningRecord, RUN } from './layout.ts';
import { eccPoint, fromHex, sha256, toHex, u64be } from './policy.ts';
import { parseSignedPolicy, type SignedPolicy } from './signed-policy.ts';
import { TPM_CC_NV_INCREMENT } from './hierarchy.ts';
import type { SecurityEvents } from '../log/security-log.ts';

/**
 * The contract / OEM-provisioning key service (TR-2019-04 §3.3.3, §5; TPM.md §1–§3) on top of the TPM HAL.
 *
 * Both keys carry their own authPolicy A = PolicyAuthorize(OEM policy key, policyRef) — the direct binding —
 * so every use needs the current OEM-signed state (PCR 14 = signed bundle, NV counter ≤ version), not only their
 * loading through the storage key: a cached context survives a TPM Restart (TPM.md §1, PITFALL demo).
 *
 * Hot path (ISO 15118-2 PnC AuthorizationReq: the EVCC signs the SECC's fresh GenChallenge): the policy session is armed before the challenge arrives
 * (PolicyPCR, PolicyNV, PolicyAuthorize do not depend on it) and the contract key's context is cached in the run
 * dir, so exactly one TPM2_Sign (one tool process) sits on the critical path. Re-armed right after use. If a PCR
 * changes in between, the TPM refuses with TPM_RC_PCR_CHANGED (N21).
 */
export type KeysErrorCode =
  | 'KEYS_NOT_PROVISIONED' | 'KEYS_NOT_BOOTED' | 'KEYS_NO_CONTRACT_KEY' | 'KEYS_NO_PROVISIONING_KEY'
  | 'KEYS_BLOB_MALFORMED' | 'KEYS_WRONG_VEHICLE' | 'KEYS_DIGEST_INVALID' | 'KEYS_SIGNATURE_MALFORMED' | 'KEYS_SELFTEST_FAILED'
  | 'KEYS_RUNTIME_SECRET_MISSING' | 'KEYS_RUNTIME_SECRET_MALFORMED' | 'KEYS_RUNTIME_SECRET_DESTROYED' | 'KEYS_TRUST_UNAVAILABLE'
  /** The imported key is not the certified one (derived public key ≠ certificate, or the proof signature fails). */
  | 'KEYS_KEY_MISMATCH'
  /** No security-log key in this data dir (provisioned before it existed, or before the first good boot). */
  | 'KEYS_NO_LOG_KEY';

export interface KeyServiceDeps {
  tpm: Tpm;
  /** Persistent data dir: provisioning record, TPM-wrapped blobs, release policies and tickets. */
  data: FileStore;
  /** Volatile run dir: boot state of this boot. */
  run: FileStore;
  log: Logger;
  /** The security log: the TPM's refusals of the state-bound keys (policy, rollback, lockout) are security events. */
  events?: SecurityEvents;
}

export interface KeyStatus {
  provisioned: boolean;
  storageKeyName?: string;
  nvCounter?: string;
  dictionaryAttack?: { counter: number; maxTries: number; recoveryTime: number; lockoutRecovery: number; inLockout: boolean };
  /** Hierarchy set-up (TPM.md §8): which authorisations are set, and whether the platform hierarchy is enabled. */
  hierarchies?: HierarchyState;
  bootedVersion?: number;
  provisioningKey: 'present' | 'pending';
  /** TPM-sealed runtime secret (store integrity key, link-key passphrase): sealed after the first good boot. */
  runtimeSecret: 'present' | 'pending';
  contractKeys: string[];
  activeContractKey?: string;
  armed: boolean;
  /** tpm2-tools processes on the critical path of the last contract-key signature (arming included if it was cold). */
  lastSignCriticalPathProcesses?: number;
}

export interface ImportedKey {
  id: string;
  publicKeyPem: string;
  /** How the key reached the TPM: TPM2_Import of an MO-wrapped duplicate, or wrapped here from a plaintext key. */
  path: 'direct' | 'compat';
  /** Contract keys this one replaced: their TPM-wrapped blobs and cached contexts are deleted. */
  superseded: string[];
}

/** What the imported key must be (the contract certificate's public key): checked before it becomes active. */
export interface ImportExpectation {
  expectedPublicKeyPem?: string;
}

/** The TPM-held key an ISO 15118-2 contract-key transport was encrypted for (the key that signed the request). */
export type EcdhKey = 'provisioning' | 'contract';

interface Release {
  version: number;
  steps: PolicyStep[];
}

export class KeyService {
  private chain: Promise<unknown> = Promise.resolve();
  private armedSession: PolicySession | undefined;
  private armed = false;
  private lastCritical: number | undefined;

  private constructor(private readonly d: KeyServiceDeps, private readonly record: ProvisioningRecord, private readonly storagePassword: Uint8Array) {}

  /**
   * `reclaim`: flush every transient object and session left in the TPM first. For the runtime at start-up, as the
   * TPM's sole user: without a resource manager a crashed predecessor's armed session stays in one of the TPM's
   * few session slots (swtpm: 3) until the next TPM reset (TPM_RC_SESSION_MEMORY, 0x903).
   */
  static async open(deps: KeyServiceDeps, opts: { reclaim?: boolean } = {}): Promise<KeyService> {
    if (opts.reclaim) await deps.tpm.flushAll();
    const record = parseJson(ProvisioningRecord, await deps.data.read(DATA.record), 'TPM provisioning record', 'KEYS_NOT_PROVISIONED');
    const pass = await deps.data.read(DATA.storagePassword);
    if (!pass) throw new EvccError('KEYS_NOT_PROVISIONED', 'storage-key password missing');
    return new KeyService(deps, record, fromHex(Buffer.from(pass).toString('utf8').trim(), 'storage-key password'));
  }

  get provisioning(): ProvisioningRecord {
    return this.record;
  }

  /** The TPM this service drives (reads that need no authorisation, e.g. the store's version counter). */
  get tpm(): Tpm {
    return this.d.tpm;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private get salt(): SaltKey {
    return { handle: this.record.srk.handle, name: fromHex(this.record.srk.name) };
  }
  private get storageKey(): KeyRef {
    return { persistent: this.record.storageKey.handle };
  }

  /** The release measured this boot, its signed policy and its cached ticket, as policy steps in the OEM's order. */
  private async release(): Promise<Release> {
    const boot = parseJson(BootState, await this.d.run.read(RUN.boot), 'boot state (evcc boot has not run this boot)', 'KEYS_NOT_BOOTED');
    const policy = parseSignedPolicy(parseJson(SignedPolicyJson, await this.d.data.read(DATA.release(boot.version, 'signed-policy.json')), `signed policy v${boot.version}`, 'KEYS_NOT_BOOTED'));
    const ticket = await this.d.data.read(DATA.release(boot.version, 'ticket.bin'));
    if (!ticket) throw new EvccError('KEYS_NOT_BOOTED', `no verification ticket for release v${boot.version}`, { version: boot.version });
    return { version: boot.version, steps: statePolicySteps(policy, ticket) };
  }

  /** Policy-session auth for the storage key: signed state ; PolicyAuthValue, plus its password (HMAC, salted). */
  private storageAuth(session: PolicySession): Auth {
    return { kind: 'policy', session, secret: this.storagePassword };
  }

  /**
   * One storage-key-authorised TPM command: a fresh salted policy session replays the signed state ; PolicyAuthValue,
   * `op` runs with that authorisation, and the session is flushed (on failure the driver flushed everything).
   */
  private async withStorageKeyAuth<T>(op: (auth: Auth) => Promise<T>): Promise<T> {
    const release = await this.release();
    const tpm = this.d.tpm;
    const session = await tpm.startPolicySession(this.salt);
    return this.guarded(async () => {
      await tpm.policy(session, [...release.steps, { kind: 'authValue' }]);
      const result = await op(this.storageAuth(session));
      await tpm.flushSession(session);
      return result;
    });
  }

  /**
   * Runs `fn`; on failure drops the armed session if the driver flushed it, so the next call starts clean. Without a
   * resource manager every failure flushes it; behind one (README: /dev/tpmrm0, tpm2-abrmd) only a failure of a
   * command that used it does, so a refused import or unseal in the middle of a charging session leaves the
   * contract key armed: the next AuthorizationReq signature is still one TPM2_Sign.
   */
  private async guarded<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const code = (err as EvccError).code;
      if (this.d.events && typeof code === 'string' && (code.startsWith('TPM_POLICY') || code === 'TPM_LOCKOUT' || code === 'TPM_PCR_CHANGED')) {
        await this.d.events.record(code === 'TPM_LOCKOUT' ? 'keys.lockout' : 'keys.refused', { code, ...(typeof (err as EvccError).details?.rc === 'string' ? { rc: (err as EvccError).details.rc as string } : {}) });
      }
      if (!this.armedSession || !this.d.tpm.isSessionLive(this.armedSession)) {
        this.armed = false;
        this.armedSession = undefined;
      }
      throw err;
    }
  }

  // ---- status -------------------------------------------------------------------------------------------------

  status(): Promise<KeyStatus> {
    return this.serial(async () => {
      const ids = await this.contractKeyIds();
      const active = await this.d.data.read(DATA.activeContractKey);
      const boot = await this.d.run.read(RUN.boot);
      let counter: string | undefined;
      let dictionaryAttack: KeyStatus['dictionaryAttack'];
      let hierarchies: HierarchyState | undefined;
      try {
        counter = String(await this.d.tpm.nvReadCounter(this.record.nvCounter.index));
        dictionaryAttack = await this.d.tpm.dictionaryAttackState();
        hierarchies = await this.d.tpm.hierarchyState();
      } catch {
        counter = undefined;
      }
      return {
        provisioned: true,
        storageKeyName: this.record.storageKey.name,
        nvCounter: counter,
        dictionaryAttack,
        ...(hierarchies ? { hierarchies } : {}),
        bootedVersion: boot ? parseJson(BootState, boot, 'boot state', 'KEYS_NOT_BOOTED').version : undefined,
        provisioningKey: (await this.d.data.exists(DATA.provisioningKey('priv'))) ? 'present' : 'pending',
        runtimeSecret: this.record.runtimeSecret && (await this.d.data.exists(DATA.runtimeSecret('priv'))) ? 'present' : 'pending',
        contractKeys: ids,
        activeContractKey: active ? Buffer.from(active).toString('utf8').trim() : undefined,
        armed: this.armed,
        lastSignCriticalPathProcesses: this.lastCritical,
      };
    });
  }

  private async contractKeyIds(): Promise<string[]> {
    return (await this.d.data.list(DATA.contractDir)).filter((f) => f.endsWith('.priv')).map((f) => f.slice(0, -5));
  }

  private async activeContractKey(): Promise<{ id: string; blob: { public: Uint8Array; private: Uint8Array }; ctx: string }> {
    const a = await this.d.data.read(DATA.activeContractKey);
    if (!a) throw new EvccError('KEYS_NO_CONTRACT_KEY', 'no contract key installed');
    const id = Buffer.from(a).toString('utf8').trim();
    const pub = await this.d.data.read(DATA.contractKey(id, 'pub'));
    const priv = await this.d.data.read(DATA.contractKey(id, 'priv'));
    if (!pub || !priv) throw new EvccError('KEYS_NO_CONTRACT_KEY', `contract key ${id} incomplete`, { id });
    return { id, blob: { public: pub, private: priv }, ctx: `contract-${id}` };
  }

  // ---- arming (off the critical path) -------------------------------------------------------------------------

  /** Loads the contract key once per boot (context cached in the run dir) and arms a policy session for it. */
  arm(): Promise<void> {
    return this.serial(() => this.armNow());
  }

  private async armNow(): Promise<void> {
    if (this.armed) return;
    const key = await this.activeContractKey();
    const release = await this.release();
    await this.guarded(async () => {
      const tpm = this.d.tpm;
      const session = this.armedSession ?? (this.armedSession = await tpm.startPolicySession(this.salt));
      if (!(await tpm.hasContext(key.ctx))) {
        await tpm.policy(session, [...release.steps, { kind: 'authValue' }]);
        await tpm.load(this.storageKey, this.storageAuth(session), key.blob, key.ctx);
        this.d.log.info({ key: key.id, version: release.version }, 'contract key loaded, context cached for this boot');
      }
      // The session was reset by its use in Load (TPM.md pitfall 12): replay the state for the key's own policy A.
      await tpm.policy(session, release.steps);
      this.armed = true;
    });
  }

  // ---- signing ------------------------------------------------------------------------------------------------

  /** ECDSA-P256 over a SHA-256 digest with the active contract key; raw r||s (64 bytes) as xmldsig needs it. */
  signWithContractKey(digest: Uint8Array): Promise<Uint8Array> {
    checkDigest(digest);
    return this.serial(async () => {
      const tpm = this.d.tpm;
      const before = tpm.spawnCount; // processes of this call: 1 when pre-armed, the whole cold path otherwise
      const key = await this.activeContractKey();
      let der: Uint8Array | undefined;
      for (let attempt = 1; der === undefined; attempt++) {
        try {
          if (!this.armed) await this.armNow();
          der = await this.guarded(() => tpm.sign({ context: key.ctx }, { kind: 'policy', session: this.armedSession! }, digest));
        } catch (err) {
          const code = (err as EvccError).code;
          // A context or session that went stale without a reboot of this process (TPM reset while the run dir
          // survived, or another process flushed our session: no resource manager) is reloaded once, under the
          // same policy. Every policy refusal is final.
          if ((code === 'TPM_CONTEXT_INVALID' || code === 'TPM_SESSION_INVALID' || staleHandle(err)) && attempt === 1) {
            await tpm.forgetContext(key.ctx);
            this.d.log.info({ code }, 'cached contract-key context or session stale: reloading under the state policy');
            continue;
          }
          this.d.log.warn({ code, rc: (err as EvccError).details?.rc }, 'contract key signature refused');
          throw err;
        }
      }
      this.lastCritical = tpm.spawnCount - before;
      this.armed = false;
      // Re-arm now, off the critical path; a failure here surfaces at the next signature.
      // Queued behind this call on the service's serial chain, so nothing else touches the session meanwhile.
      void this.serial(() => this.armNow()).catch((err: unknown) => {
        this.d.log.warn({ code: (err as EvccError).code }, 're-arming the contract key policy session failed');
      });
      return derToRaw(der);
    });
  }

  /** Signs with the OEM provisioning key (CertificateInstallationReq), cold path: rare. */
  signWithProvisioningKey(digest: Uint8Array): Promise<Uint8Array> {
    checkDigest(digest);
    return this.serial(async () => {
      const pub = await this.d.data.read(DATA.provisioningKey('pub'));
      const priv = await this.d.data.read(DATA.provisioningKey('priv'));
      if (!pub || !priv) throw new EvccError('KEYS_NO_PROVISIONING_KEY', 'OEM provisioning key not created yet (run evcc tpm provision after the first good boot)');
      const der = await this.coldSign({ public: pub, private: priv }, 'oem-provisioning', digest);
      return derToRaw(der);
    });
  }

  /**
   * Signs with the security-log key (log checkpoints, firmware/log/security-log.ts), cold path. Its policy A makes
   * the TPM refuse in a state the OEM did not approve (TPM_POLICY_NOT_APPROVED): the checkpoint is then unsigned.
   */
  signWithLogKey(digest: Uint8Array): Promise<Uint8Array> {
    checkDigest(digest);
    return this.serial(async () => {
      const pub = await this.d.data.read(DATA.logKey('pub'));
      const priv = await this.d.data.read(DATA.logKey('priv'));
      if (!pub || !priv || !this.record.logKey) throw new EvccError('KEYS_NO_LOG_KEY', 'security-log key not created yet (run evcc tpm provision after the first good boot)');
      return derToRaw(await this.coldSign({ public: pub, private: priv }, 'security-log', digest));
    });
  }

  private async coldSign(blob: { public: Uint8Array; private: Uint8Array }, ctx: string, digest: Uint8Array): Promise<Uint8Array> {
    const release = await this.release();
    const tpm = this.d.tpm;
    const session = await tpm.startPolicySession(this.salt);
    return this.guarded(async () => {
      await tpm.policy(session, [...release.steps, { kind: 'authValue' }]);
      await tpm.load(this.storageKey, this.storageAuth(session), blob, ctx);
      await tpm.policy(session, release.steps);
      const der = await tpm.sign({ context: ctx }, { kind: 'policy', session }, digest);
      await tpm.flushSession(session);
      await tpm.forgetContext(ctx);
      return der;
    });
  }

  /** Creates a key inside the TPM under the storage key (OEM provisioning key: factory, first good boot). */
  createUnderStorageKey(template: KeyTemplate): Promise<KeyBlob> {
    return this.serial(() => this.withStorageKeyAuth((auth) => this.d.tpm.create(this.storageKey, auth, template)));
  }

  /**
   * Seals `data` under the storage key as a keyedhash data object with the given authPolicy (runtime secret:
   * factory, first good boot — the storage key's own policy needs the OEM-approved state). Data via stdin only.
   */
  sealUnderStorageKey(data: Uint8Array, authPolicy: Uint8Array): Promise<KeyBlob> {
    return this.serial(() => this.withStorageKeyAuth((auth) => this.d.tpm.createSealed(this.storageKey, auth, { data, authPolicy })));
  }

  /**
   * Unseals a data object sealed under the storage key with policy A: loads it through the storage key (state
   * policy ; PolicyAuthValue) and unseals it through its own policy (state policy again: the direct binding, so a
   * context cached in a good boot does not unseal in a tampered one). In a tampered or rolled-back state the TPM
   * refuses with a typed TPM_POLICY_* error. The context file is removed whatever happens.
   */
  unsealWithStatePolicy(blob: KeyBlob, contextName: string): Promise<Uint8Array> {
    return this.serial(async () => {
      const release = await this.release();
      const tpm = this.d.tpm;
      const session = await tpm.startPolicySession(this.salt);
      try {
        return await this.guarded(async () => {
          await tpm.policy(session, [...release.steps, { kind: 'authValue' }]);
          await tpm.load(this.storageKey, this.storageAuth(session), blob, contextName);
          await tpm.policy(session, release.steps); // the session was reset by its use in Load (pitfall 12)
          const data = await tpm.unseal({ context: contextName }, { kind: 'policy', session });
          await tpm.flushSession(session);
          return data;
        });
      } finally {
        await tpm.forgetContext(contextName);
      }
    });
  }

  /**
   * TPM2_NV_Increment of a counter whose write policy is A (the certificate store's version counter,
   * store-counter.ts): a fresh salted session replays the signed state, so only an OEM-approved state raises it.
   */
  incrementWithStatePolicy(index: number): Promise<void> {
    return this.serial(async () => {
      const release = await this.release();
      const tpm = this.d.tpm;
      const session = await tpm.startPolicySession(this.salt);
      await this.guarded(async () => {
        await tpm.policy(session, release.steps);
        await tpm.nvIncrement(index, { kind: 'policy', session });
        await tpm.flushSession(session);
      });
    });
  }

  /**
   * One TPM2_NV_Increment of the firmware anti-rollback counter (owner-written, `boot commit`). Once provisioning
   * has set the owner authorisation (hierarchy.ts), the owner hierarchy is used through its policy — the signed
   * state ; PolicyCommandCode(NV_Increment) — so only an OEM-approved running release raises it, and the runtime
   * never holds the owner authorisation. Before that set-up: plain owner authorisation (empty).
   */
  incrementAntiRollbackCounter(index: number): Promise<void> {
    return this.serial(async () => {
      const tpm = this.d.tpm;
      if (!(await tpm.hierarchyState()).ownerAuthSet) return tpm.nvIncrement(index);
      const release = await this.release();
      const session = await tpm.startPolicySession(this.salt);
      await this.guarded(async () => {
        await tpm.policy(session, [...release.steps, { kind: 'commandCode', code: TPM_CC_NV_INCREMENT }]);
        await tpm.nvIncrement(index, { kind: 'policy', session }, { as: 'owner' });
        await tpm.flushSession(session);
      });
    });
  }

  // ---- import -------------------------------------------------------------------------------------------------

  /** Direct import (TR-2019-04 §3.3.3): the MO wrapped the key for this vehicle's storage key; nothing in clear. */
  importContractKey(blob: Uint8Array | unknown, expect: ImportExpectation = {}): Promise<ImportedKey> {
    return this.serial(async () => {
      let raw: unknown = blob;
      if (blob instanceof Uint8Array) {
        try {
          raw = JSON.parse(Buffer.from(blob).toString('utf8'));
        } catch (err) {
          throw new EvccError('KEYS_BLOB_MALFORMED', 'import blob is not JSON', {}, { cause: err });
        }
      }
      const { blob: dup, storageKeyName } = decodeImportBlob(raw);
      if (toHex(storageKeyName) !== this.record.storageKey.name) {
        throw new EvccError('KEYS_WRONG_VEHICLE', 'import blob was wrapped for another storage key', { expected: this.record.storageKey.name, got: toHex(storageKeyName) });
      }
      return this.importWrapped(dup, 'direct', expect);
    });
  }

  /**
   * Direct import from an ISO 15118-2 CertificateInstallationRes / CertificateUpdateRes (duplicate.ts
   * DirectTransport): the public area is rebuilt here from the contract certificate's key with this vehicle's
   * attributes and policy A, so the TPM's integrity check of the duplicate proves the blob was made for exactly
   * that key and this storage key; a proof signature, verified with the certificate's key, comes before activation.
   */
  importCertifiedContractKey(transport: DirectTransport, certificatePublicKeyPem: string): Promise<ImportedKey> {
    return this.serial(async () => {
      const publicArea = contractKeyPublic(eccPoint(certificatePublicKeyPem), fromHex(this.record.policies.keys));
      const dup = fromDirectTransport(transport, publicArea);
      return this.importWrapped(dup, 'direct', { expectedPublicKeyPem: certificatePublicKeyPem });
    });
  }

  /**
   * The ISO 15118-2 compatible path (iso-key-transport.ts): TPM2_ECDH_ZGen with `ecdhKey` (the OEM provisioning key
   * for an installation, the active contract key for an update) against `dhPublicKey`, the KDF and AES-128-CBC in
   * memory, then the key is wrapped for the storage key and imported. Z, the AES key and the scalar exist only in
   * this call's buffers and are wiped; a scalar whose public key is not `expectedPublicKeyPem` is refused
   * (KEYS_KEY_MISMATCH) before anything reaches the TPM.
   */
  importIsoEncryptedContractKey(o: { ecdhKey: EcdhKey; dhPublicKey: Uint8Array; encryptedPrivateKey: Uint8Array; expectedPublicKeyPem: string }): Promise<ImportedKey> {
    return this.serial(async () => {
      checkUncompressedPoint(o.dhPublicKey);
      const expected = eccPoint(o.expectedPublicKeyPem);
      const z = await this.ecdhZGen(o.ecdhKey, eccPointOfUncompressed(o.dhPublicKey));
      const zx = zxOfEccPoint(z);
      z.fill(0);
      const aesKey = isoKdf(zx);
      zx.fill(0);
      let scalar: Uint8Array;
      try {
        scalar = isoDecryptPrivateKey(aesKey, o.encryptedPrivateKey);
      } finally {
        aesKey.fill(0);
      }
      try {
        const dup = wrapForImport(scalar, { storageKeyPublic: fromHex(this.record.storageKey.public), authPolicy: fromHex(this.record.policies.keys) });
        const area = parseEccPublic(dup.public);
        if (toHex(area.x) !== toHex(expected.x) || toHex(area.y) !== toHex(expected.y)) {
          throw new EvccError('KEYS_KEY_MISMATCH', 'decrypted contract key does not belong to the contract certificate', { ecdhKey: o.ecdhKey });
        }
        return await this.importWrapped(dup, 'compat', {});
      } finally {
        scalar.fill(0);
      }
    });
  }

  /**
   * TPM2_ECDH_ZGen with the OEM provisioning key or the active contract key (both sign|decrypt, policy A): loaded
   * through the storage key under the signed state, then used under policy A again. Returns the TPM2B_ECC_POINT Z
   * in memory; the caller wipes it.
   */
  private async ecdhZGen(which: EcdhKey, peer: Uint8Array): Promise<Uint8Array> {
    let blob: KeyBlob;
    if (which === 'provisioning') {
      const pub = await this.d.data.read(DATA.provisioningKey('pub'));
      const priv = await this.d.data.read(DATA.provisioningKey('priv'));
      if (!pub || !priv) throw new EvccError('KEYS_NO_PROVISIONING_KEY', 'OEM provisioning key not created yet');
      blob = { public: pub, private: priv };
    } else {
      blob = (await this.activeContractKey()).blob;
    }
    const release = await this.release();
    const tpm = this.d.tpm;
    const ctx = `ecdh-${which}`;
    const session = await tpm.startPolicySession(this.salt);
    try {
      return await this.guarded(async () => {
        await tpm.policy(session, [...release.steps, { kind: 'authValue' }]);
        await tpm.load(this.storageKey, this.storageAuth(session), blob, ctx);
        await tpm.policy(session, release.steps);
        return await tpm.ecdhZGen({ context: ctx }, { kind: 'policy', session }, peer); // consumes the session
      });
    } finally {
      await tpm.forgetContext(ctx);
    }
  }

  /**
   * Compatibility path (ISO 15118-2 CertificateInstallationRes carries the contract key encrypted to the EVCC,
   * decrypted outside the TPM): the plaintext key is wrapped for the storage key in memory, imported, and the
   * caller's buffer is zeroed. It never reaches a file. Accepts a 32-byte scalar or a PEM/DER private key.
   */
  importPlaintextContractKey(privateKey: Uint8Array, expect: ImportExpectation = {}): Promise<ImportedKey> {
    return this.serial(async () => {
      const scalar = privateKey.length === 32 ? Uint8Array.from(privateKey) : privateScalarOf(privateKey);
      privateKey.fill(0);
      try {
        const dup = wrapForImport(scalar, { storageKeyPublic: fromHex(this.record.storageKey.public), authPolicy: fromHex(this.record.policies.keys) });
        return await this.importWrapped(dup, 'compat', expect);
      } finally {
        scalar.fill(0);
      }
    });
  }

  /**
   * Imports, proves and activates a contract key. Until the active pointer is switched (one atomic rename) the
   * previous contract key stays the active one and keeps signing: a refused import, or a proof signature that
   * does not verify with `expectedPublicKeyPem`, removes the new blob files and changes nothing else. After the
   * switch the superseded keys' TPM-wrapped blobs and cached contexts are deleted.
   */
  private async importWrapped(dup: ImportBlob, path: 'direct' | 'compat', expect: ImportExpectation): Promise<ImportedKey> {
    const area = parseEccPublic(dup.public);
    if (toHex(area.authPolicy) !== this.record.policies.keys) {
      // Without the direct binding a cached context would outlive the state check (TPM.md §1): refuse.
      throw new EvccError('KEYS_BLOB_MALFORMED', 'contract key is not bound to the OEM state policy (authPolicy ≠ A)', { authPolicy: toHex(area.authPolicy) });
    }
    const pem = eccPublicPem(area);
    if (expect.expectedPublicKeyPem !== undefined) {
      const e = eccPoint(expect.expectedPublicKeyPem);
      if (toHex(e.x) !== toHex(area.x) || toHex(e.y) !== toHex(area.y)) throw new EvccError('KEYS_KEY_MISMATCH', 'key to import is not the certified key', { path });
    }
    const priv = await this.withStorageKeyAuth((auth) => this.d.tpm.importDuplicate(this.storageKey, auth, dup));
    const id = toHex(sha256(objectName(dup.public))).slice(0, 16);
    const previous = await this.contractKeyIds();
    const staged = [DATA.contractKey(id, 'pub'), DATA.contractKey(id, 'priv'), DATA.contractKey(id, 'pub.pem')];
    try {
      await this.d.data.writeAtomic(DATA.contractKey(id, 'pub'), dup.public, { mode: 0o600 });
      await this.d.data.writeAtomic(DATA.contractKey(id, 'priv'), priv, { mode: 0o600 });
      await this.d.data.writeAtomic(DATA.contractKey(id, 'pub.pem'), pem, { mode: 0o644 });
      if (expect.expectedPublicKeyPem !== undefined) await this.proveKey(id, { public: dup.public, private: priv }, expect.expectedPublicKeyPem);
    } catch (err) {
      if (!previous.includes(id)) for (const f of staged) await this.d.data.remove(f).catch(() => undefined);
      throw err;
    }
    await this.d.data.writeAtomic(DATA.activeContractKey, `${id}\n`);
    // The armed session may hold the old key's state assertions: start the next arming from a fresh session.
    if (this.armedSession) await this.d.tpm.flushSession(this.armedSession).catch(() => undefined);
    this.armedSession = undefined;
    this.armed = false;
    const superseded = previous.filter((p) => p !== id);
    for (const old of superseded) {
      for (const ext of ['priv', 'pub', 'pub.pem'] as const) await this.d.data.remove(DATA.contractKey(old, ext));
      await this.d.tpm.forgetContext(`contract-${old}`);
    }
    this.d.log.info({ key: id, path, superseded }, 'contract key imported into the TPM');
    return { id, publicKeyPem: pem, path, superseded };
  }

  /** Signs a fresh digest with the staged key through the TPM and verifies it with the certified public key. */
  private async proveKey(id: string, blob: KeyBlob, expectedPublicKeyPem: string): Promise<void> {
    const message = new Uint8Array(randomBytes(32));
    const ctx = `contract-proof-${id}`;
    let raw: Uint8Array;
    try {
      raw = derToRaw(await this.coldSign(blob, ctx, sha256(message)));
    } finally {
      await this.d.tpm.forgetContext(ctx);
    }
    if (!verifyRawSignature(expectedPublicKeyPem, message, raw)) {
      throw new EvccError('KEYS_KEY_MISMATCH', 'the imported key\'s signature does not verify with the certified public key', { key: id });
    }
  }

  /**
   * Proves the running release can use its keys (A/B commit gate): signs a fresh random digest with the contract
   * key (else the provisioning key) through the TPM and verifies it in software with the stored public key.
   */
  async selfTest(): Promise<{ key: 'contract' | 'provisioning' }> {
    const message = new Uint8Array(randomBytes(48));
    const digest = sha256(message);
    let key: 'contract' | 'provisioning' = 'contract';
    let raw: Uint8Array;
    let pem: Uint8Array | undefined;
    if (await this.d.data.exists(DATA.activeContractKey)) {
      raw = await this.signWithContractKey(digest);
      const id = Buffer.from((await this.d.data.read(DATA.activeContractKey))!).toString('utf8').trim();
      pem = await this.d.data.read(DATA.contractKey(id, 'pub.pem'));
    } else {
      key = 'provisioning';
      raw = await this.signWithProvisioningKey(digest);
      pem = await this.d.data.read(DATA.provisioningKey('pub.pem'));
    }
    const ok = pem !== undefined && verifyRawSignature(Buffer.from(pem).toString('utf8'), message, raw);
    if (!ok) throw new EvccError('KEYS_SELFTEST_FAILED', `${key} key signature did not verify`);
    return { key };
  }

  /** The contract key as an xmldsig `Signer` (firmware/exi/xmldsig): AuthorizationReq, PaymentDetails, MeteringReceipt. */
  contractKeySigner(): { sign(digest32: Uint8Array): Promise<Uint8Array> } {
    return { sign: (digest32) => this.signWithContractKey(digest32) };
  }

  /** The OEM provisioning key as an xmldsig `Signer` (CertificateInstallationReq). */
  provisioningKeySigner(): { sign(digest32: Uint8Array): Promise<Uint8Array> } {
    return { sign: (digest32) => this.signWithProvisioningKey(digest32) };
  }

  async close(): Promise<void> {
    await this.serial(async () => {
      if (this.armedSession) await this.d.tpm.flushSession(this.armedSession).catch(() => undefined);
      this.armedSession = undefined;
      this.armed = false;
    });
  }
}

/**
 * The signed-state assertions in the order the OEM computed them (TPM.md pitfall 7): PolicyPCR, PolicyNV
 * (counter ≤ version), then PolicyAuthorize with the cached ticket, which replaces both by "the OEM approved this".
 */
export function statePolicySteps(policy: SignedPolicy, ticket: Uint8Array): PolicyStep[] {
  return [
    { kind: 'pcr', bank: 'sha256', pcrs: [policy.pcrs.index] },
    { kind: 'nv', index: policy.nv.index, operandB: u64be(policy.version), operation: 'ule' },
    { kind: 'authorize', approvedPolicy: fromHex(policy.policy), policyRef: fromHex(policy.policyRef), keyName: fromHex(policy.key.name), ticket },
  ];
}

/**
 * TPM_RC_HANDLE (format one, 0x08B) at a command that loads our saved session or key context: the TPM no longer has
 * what the file names, typically because another process without a resource manager flushed every session after
 * one of its own failures (0x1CB as tpm2-tools 5.4 prints it).
 */
function staleHandle(err: unknown): boolean {
  const rc = typeof (err as EvccError).details?.rc === 'string' ? parseInt((err as EvccError).details.rc as string, 16) : 0;
  return (rc & 0x080) !== 0 && (rc & 0x03f) === 0x00b;
}

function checkDigest(digest: Uint8Array): void {
  if (!(digest instanceof Uint8Array) || digest.length !== 32) {
    throw new EvccError('KEYS_DIGEST_INVALID', 'digest must be 32 bytes (SHA-256)', { length: (digest as Uint8Array)?.length });
  }
}

/**
 * Verifies a raw r||s signature made over SHA-256(message). node:crypto has no verify for a bare digest with EC
 * keys, so callers keep the preimage (the self-test signs the digest of a random message).
 */
export function verifyRawSignature(publicKeyPem: string, message: Uint8Array, rawSignature: Uint8Array): boolean {
  try {
    return cryptoVerify('sha256', message, { key: createPublicKey(publicKeyPem), dsaEncoding: 'ieee-p1363' }, rawSignature);
  } catch {
    return false;
  }
}

const SignedPolicyJson = z.unknown();

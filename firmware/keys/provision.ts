import { randomBytes } from 'node:crypto';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { FileStore } from '../../hal/store/types.ts';
import type { DictionaryAttackParameters, Tpm } from '../../hal/tpm/types.ts';
import { eccPublicPem, objectName, parseEccPublic } from './duplicate.ts';
import { DATA, jsonBytes, LOG_KEY_ATTRIBUTES, LOG_KEY_SCHEME, parseJson, PROVISIONING_KEY_ATTRIBUTES, PROVISIONING_KEY_SCHEME, ProvisioningRecord, STORAGE_KEY_ATTRIBUTES, TPM_LAYOUT } from './layout.ts';
import { externalEccName, fromHex, nvCounterName, policyAuthorize, policyAuthValue, spkiFingerprint, toHex } from './policy.ts';
import { DEFAULT_POLICY_REF } from './signed-policy.ts';
import { KeyService } from './key-service.ts';
import { createRuntimeSecret } from './runtime-secret.ts';
import { provisionStoreCounter } from './store-counter.ts';
import { readHierarchyEscrow, setUpHierarchies, type HierarchyEscrow } from './hierarchy.ts';
import { createAttestationKey } from './attestation-key.ts';
import { createLinkSecret } from './link-credential.ts';

/**
 * Factory provisioning (TR-2019-04 §3.3.1; TPM.md §2, §3): SRK, storage key (restricted decrypt; password +
 * PolicyAuthorize(OEM) + PolicyAuthValue, userWithAuth clear so no password-only use), NV anti-rollback
 * counter, and — once a signed release has booted, because the storage key can only be used in an OEM-approved
 * state — the OEM provisioning key under the storage key with its own policy A.
 * Idempotent: a second run completes what is pending and changes nothing else; it refuses to overwrite.
 */
export interface ProvisionOptions {
  oemPolicyKeyPem: string;
  policyRef?: Uint8Array;
  /**
   * Dictionary-attack parameters (TPM.md pitfall 13): a power loss after any use of the DA-protected storage key
   * counts as one failure, so a vehicle that loses 12 V a few times within the recovery time would lock its
   * storage key out with the TPM's defaults (swtpm: 3 tries, 1000 s). Applied on every run when given.
   */
  dictionaryAttack?: DictionaryAttackParameters;
  /**
   * The OEM's hierarchy-escrow public key (P-256, PEM; hierarchy.ts). With it, the first-boot completion ends with
   * the hierarchy set-up of TPM.md §8: owner policy, then random owner/endorsement/lockout authorisation escrowed to
   * this key. It comes last: every owner- or lockout-authorised step of provisioning (NV definitions, DA parameters)
   * must run before it. Without it the hierarchies stay open (empty authorisation), logged as pending.
   */
  hierarchyEscrowKeyPem?: string;
}

export interface ProvisionResult {
  record: ProvisioningRecord;
  created: string[];
  /** The escrow record of the hierarchy authorisations (ciphertext for the OEM only), once set up. */
  hierarchyEscrow?: HierarchyEscrow;
}

export async function provisionTpm(deps: { tpm: Tpm; data: FileStore; run: FileStore; log: Logger }, opts: ProvisionOptions): Promise<ProvisionResult> {
  const { tpm, data, log } = deps;
  const created: string[] = [];
  const existing = await data.read(DATA.record);
  let record: ProvisioningRecord;
  if (existing) {
    record = parseJson(ProvisioningRecord, existing, 'TPM provisioning record', 'KEYS_NOT_PROVISIONED');
    const persistent = await tpm.handles('persistent');
    if (!persistent.includes(record.storageKey.handle) || !persistent.includes(record.srk.handle)) {
      throw new EvccError('KEYS_PROVISION_CONFLICT', 'provisioning record exists but the TPM lacks its keys (TPM cleared?): refusing to re-provision over it');
    }
    const stk = await tpm.readPublic({ persistent: record.storageKey.handle });
    if (toHex(stk.name) !== record.storageKey.name) throw new EvccError('KEYS_PROVISION_CONFLICT', 'storage key in the TPM differs from the provisioning record');
    if (record.oemPolicyKey.fingerprint !== spkiFingerprint(opts.oemPolicyKeyPem)) {
      throw new EvccError('KEYS_PROVISION_CONFLICT', 'already provisioned for another OEM policy key: refusing to overwrite');
    }
  } else {
    record = await provisionFresh(deps, opts);
    created.push('srk', 'nv-counter', 'storage-key');
  }
  if (opts.dictionaryAttack) {
    const da = opts.dictionaryAttack;
    const now = await tpm.dictionaryAttackState();
    if (now.maxTries !== da.maxTries || now.recoveryTime !== da.recoveryTime || now.lockoutRecovery !== da.lockoutRecovery) {
      // Never try the lockout hierarchy without its authorisation once set: one failure locks it for lockoutRecovery.
      if ((await tpm.hierarchyState()).lockoutAuthSet) {
        throw new EvccError('KEYS_HIERARCHY_LOCKED', 'dictionary-attack parameters differ, but the lockout authorisation is set (escrowed to the OEM): change them through the OEM service path', { ...da });
      }
      await tpm.setDictionaryAttackParameters(da);
      created.push('dictionary-attack-parameters');
      log.info({ ...da }, 'dictionary-attack parameters set');
    }
  }
  // SRK children, independent of the software state: on every vehicle at once, also one provisioned before they existed.
  if (!record.attestationKey) {
    record = await createAttestationKey({ tpm, data, log }, record);
    created.push('attestation-key');
  }
  if (!record.linkSecret) {
    record = await createLinkSecret({ tpm, data, log }, record);
    created.push('link-secret');
  }
  if (!record.oemProvisioningKey) {
    if (await deps.run.exists('boot.json')) {
      record = await createProvisioningKey(deps, record);
      created.push('oem-provisioning-key');
    } else {
      log.warn({}, 'OEM provisioning key pending: it is created under the storage key after the first good boot (evcc boot, then evcc tpm provision again)');
    }
  }
  if (!record.runtimeSecret) {
    // Same gate as the provisioning key: sealing under the storage key needs the OEM-approved state.
    if (await deps.run.exists('boot.json')) {
      const keys = await KeyService.open(deps);
      try {
        record = await createRuntimeSecret({ keys, data, log }, record);
      } finally {
        await keys.close();
      }
      created.push('runtime-secret');
    } else {
      log.warn({}, 'runtime secret pending: it is sealed under the storage key after the first good boot (evcc boot, then evcc tpm provision again)');
    }
  }
  if (!record.storeCounter && (await deps.run.exists('boot.json'))) {
    // Same gate: the certificate store's version counter is raised only through policy A (store-counter.ts).
    const keys = await KeyService.open(deps);
    try {
      record = await provisionStoreCounter({ tpm, keys, data, log }, record);
    } finally {
      await keys.close();
    }
    created.push('store-counter');
  }
  if (!record.logKey && (await deps.run.exists('boot.json'))) {
    // Same gate: a key under the storage key, with policy A (security-log checkpoints, firmware/log/security-log.ts).
    record = await createLogKey(deps, record);
    created.push('security-log-key');
  }
  // Last (hierarchy.ts): once the owner and lockout authorisations are set, provisioning has no owner access left.
  if (await deps.run.exists('boot.json')) {
    if (opts.hierarchyEscrowKeyPem) created.push(...(await setUpHierarchies({ tpm, data, log }, record, opts.hierarchyEscrowKeyPem)));
    else if (!(await tpm.hierarchyState()).ownerAuthSet) log.warn({}, 'hierarchy set-up pending: owner, endorsement and lockout authorisation are still empty (give the OEM hierarchy-escrow key)');
  }
  const hierarchyEscrow = await readHierarchyEscrow(data);
  return { record, created, ...(hierarchyEscrow ? { hierarchyEscrow } : {}) };
}

async function provisionFresh(deps: { tpm: Tpm; data: FileStore; log: Logger }, opts: ProvisionOptions): Promise<ProvisioningRecord> {
  const { tpm, data, log } = deps;
  const L = TPM_LAYOUT;
  const persistent = await tpm.handles('persistent');
  const nv = await tpm.handles('nv-index');
  const busy = ([L.srkHandle, L.storageKeyHandle] as number[]).filter((h) => persistent.includes(h)).concat(nv.includes(L.nvCounterIndex) ? [L.nvCounterIndex] : []);
  if (busy.length) {
    throw new EvccError('KEYS_PROVISION_CONFLICT', `TPM handles already in use: ${busy.map((h) => `0x${h.toString(16)}`).join(', ')} — refusing to overwrite (a TPM provisioned for another data dir, or an interrupted provisioning: clear the TPM in the factory, then re-run)`, { busy });
  }
  const policyRef = opts.policyRef ?? new TextEncoder().encode(DEFAULT_POLICY_REF);

  // OEM policy key: the TPM's name must equal the offline one, or every ticket would fail (pitfall 8).
  const oemName = await tpm.externalKeyName(opts.oemPolicyKeyPem);
  if (toHex(oemName) !== toHex(externalEccName(opts.oemPolicyKeyPem))) throw new EvccError('KEYS_PROVISION_CONFLICT', 'OEM key name differs from the offline computation');
  const keysPolicy = policyAuthorize(oemName, policyRef);
  const storagePolicy = policyAuthValue(keysPolicy);
  const trial = await tpm.startTrialSession();
  const trialDigest = await tpm.policy(trial, [{ kind: 'authorize', approvedPolicy: new Uint8Array(0), policyRef, keyName: oemName }, { kind: 'authValue' }]);
  await tpm.flushSession(trial);
  if (!trialDigest || toHex(trialDigest) !== toHex(storagePolicy)) throw new EvccError('KEYS_PROVISION_CONFLICT', 'storage policy: trial session differs from the offline computation');

  const srk = await tpm.createStoragePrimary(L.srkHandle);
  log.info({ handle: `0x${L.srkHandle.toString(16)}` }, 'SRK created and persisted');

  await tpm.nvDefineCounter(L.nvCounterIndex);
  await tpm.nvIncrement(L.nvCounterIndex); // must precede any read (0x14A); its value is the TPM's highest counter ever
  const initial = await tpm.nvReadCounter(L.nvCounterIndex);
  const nvName = await tpm.nvName(L.nvCounterIndex);
  if (toHex(nvName) !== toHex(nvCounterName(L.nvCounterIndex))) throw new EvccError('KEYS_PROVISION_CONFLICT', 'NV counter name differs from the offline computation');
  log.info({ index: `0x${L.nvCounterIndex.toString(16)}`, value: String(initial) }, 'NV anti-rollback counter defined');

  // Written before the key exists, so a crash cannot leave a key whose password is lost.
  const password = new Uint8Array(randomBytes(16));
  await data.writeAtomic(DATA.storagePassword, `${toHex(password)}\n`, { mode: 0o600 });
  const blob = await tpm.create({ persistent: L.srkHandle }, { kind: 'empty' },
    { alg: 'ecc256', scheme: 'null:aes128cfb', attributes: STORAGE_KEY_ATTRIBUTES, authValue: password, authPolicy: storagePolicy });
  password.fill(0);
  const loaded = await tpm.load({ persistent: L.srkHandle }, { kind: 'empty' }, blob, 'provision-storage-key');
  await tpm.persist(loaded, L.storageKeyHandle);
  await tpm.forgetContext('provision-storage-key');
  const stk = await tpm.readPublic({ persistent: L.storageKeyHandle });
  log.info({ handle: `0x${L.storageKeyHandle.toString(16)}`, name: toHex(stk.name) }, 'storage key created and persisted');

  const record: ProvisioningRecord = {
    format: 'evcc-tpm-provisioning/1',
    srk: { handle: L.srkHandle, name: toHex(srk.name) },
    storageKey: { handle: L.storageKeyHandle, name: toHex(stk.name), public: toHex(stk.public) },
    nvCounter: { index: L.nvCounterIndex, name: toHex(nvName), initialValue: String(initial) },
    pcr: { bank: 'sha256', index: L.pcr },
    policyRef: toHex(policyRef),
    oemPolicyKey: { name: toHex(oemName), fingerprint: spkiFingerprint(opts.oemPolicyKeyPem) },
    policies: { keys: toHex(keysPolicy), storage: toHex(storagePolicy) },
    provisionedAt: new Date().toISOString(),
  };
  await data.writeAtomic(DATA.oemPolicyKey, opts.oemPolicyKeyPem, { mode: 0o644 });
  await data.writeAtomic(DATA.record, jsonBytes(record), { mode: 0o644 });
  return record;
}

/** The signing keys created under the storage key with policy A after the first good boot: where they go, how they are made. */
const STATE_BOUND_KEYS = {
  oemProvisioningKey: { scheme: PROVISIONING_KEY_SCHEME, attributes: PROVISIONING_KEY_ATTRIBUTES, files: DATA.provisioningKey, what: 'OEM provisioning key created in the TPM under the storage key' },
  logKey: { scheme: LOG_KEY_SCHEME, attributes: LOG_KEY_ATTRIBUTES, files: DATA.logKey, what: 'security-log key created in the TPM under the storage key (policy A)' },
} as const;

const createProvisioningKey = (deps: KeyDeps, record: ProvisioningRecord) => createStateBoundKey(deps, record, 'oemProvisioningKey');
const createLogKey = (deps: KeyDeps, record: ProvisioningRecord) => createStateBoundKey(deps, record, 'logKey');

type KeyDeps = { tpm: Tpm; data: FileStore; run: FileStore; log: Logger };

async function createStateBoundKey(deps: KeyDeps, record: ProvisioningRecord, which: keyof typeof STATE_BOUND_KEYS): Promise<ProvisioningRecord> {
  const { data, log } = deps;
  const k = STATE_BOUND_KEYS[which];
  const service = await KeyService.open(deps);
  let blob;
  try {
    blob = await service.createUnderStorageKey({ alg: 'ecc256', scheme: k.scheme, attributes: k.attributes, authPolicy: fromHex(record.policies.keys) });
  } finally {
    await service.close();
  }
  const pem = eccPublicPem(parseEccPublic(blob.public));
  await data.writeAtomic(k.files('pub'), blob.public, { mode: 0o644 });
  await data.writeAtomic(k.files('priv'), blob.private, { mode: 0o600 });
  await data.writeAtomic(k.files('pub.pem'), pem, { mode: 0o644 });
  const entry = { name: toHex(objectName(blob.public)), publicKeyPem: pem };
  const next: ProvisioningRecord = { ...record, [which]: entry };
  await data.writeAtomic(DATA.record, jsonBytes(next), { mode: 0o644 });
  log.info({ name: entry.name }, k.what);
  return next;
}

/** Files the OEM and MO backends need from this vehicle (all public; the hierarchy escrow is ciphertext for the OEM). */
export function backendExport(record: ProvisioningRecord, hierarchyEscrow?: HierarchyEscrow): Record<string, Uint8Array | string> {
  const out: Record<string, Uint8Array | string> = {
    'device.json': jsonBytes({
      format: 'evcc-tpm-export/1',
      storageKeyName: record.storageKey.name,
      srkName: record.srk.name,
      nvCounter: record.nvCounter,
      pcr: record.pcr,
      policyRef: record.policyRef,
      oemPolicyKey: record.oemPolicyKey,
      policies: record.policies,
      oemProvisioningKeyName: record.oemProvisioningKey?.name,
      logKeyName: record.logKey?.name,
    }),
    'storage.tpm2b_pub': fromHex(record.storageKey.public),
    'storage.name': fromHex(record.storageKey.name),
    'srk.name': fromHex(record.srk.name),
    'keys.policy': fromHex(record.policies.keys),
    'storage.policy': fromHex(record.policies.storage),
    'nv.name': fromHex(record.nvCounter.name),
  };
  if (record.oemProvisioningKey) out['oem-provisioning.pub.pem'] = record.oemProvisioningKey.publicKeyPem;
  if (record.attestationKey) {
    // The OEM registers these at production: the backend verifies this vehicle's quotes with them (deploy/oem-backend/attestation.ts).
    out['attestation.pub.pem'] = record.attestationKey.publicKeyPem;
    out['attestation.tpm2b_pub'] = fromHex(record.attestationKey.public);
  }
  if (record.logKey) out['security-log.pub.pem'] = record.logKey.publicKeyPem;
  if (hierarchyEscrow) out['hierarchy-escrow.json'] = jsonBytes(hierarchyEscrow);
  return out;
}

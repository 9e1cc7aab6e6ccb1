import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, createCipheriv, createDecipheriv } from 'node:crypto';
import { z } from 'zod';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { FileStore } from '../../hal/store/types.ts';
import type { Hierarchy, PolicyStep, Tpm } from '../../hal/tpm/types.ts';
import { jsonBytes, parseJson, type ProvisioningRecord } from './layout.ts';
import { fromHex, sha256, toHex } from './policy.ts';

/**
 * Hierarchy set-up of TPM.md §8, the last step of provisioning, and the platform lock of every boot.
 *
 * Where the values come from (the decision): owner, endorsement and lockout authorisation are 32 random bytes each,
 * drawn per vehicle and per hierarchy, and ESCROWED TO THE OEM: each is encrypted (ECIES: ephemeral P-256 ECDH,
 * HKDF-SHA256, AES-256-GCM) to the OEM's hierarchy-escrow public key before the TPM takes it, and only that
 * ciphertext is kept (data dir and backend export). The plaintext exists in this process's memory and on the
 * tool's stdin only; no file on the vehicle, and nothing the vehicle can decrypt. Why:
 *  - no fleet secret and nothing derivable: a leaked value opens one hierarchy of one vehicle, and none is stored
 *    where a compromised vehicle could read it;
 *  - not sealed on the vehicle: the lockout authorisation is what ends a dictionary-attack lockout, and a value
 *    sealed under the (DA-protected) storage key could not be unsealed in exactly that situation;
 *  - the runtime needs none of them: the anti-rollback counter is raised through the owner POLICY (signed state ;
 *    PolicyCommandCode(NV_Increment), set before the owner auth), the store counter through its own write policy;
 *  - service stays possible: the OEM backend decrypts the escrow (`openHierarchyEscrow`) for a workshop DA reset,
 *    new DA parameters, or TPM2_Clear before re-provisioning.
 * The platform hierarchy cannot be locked once: TPM2_Startup enables it again with an empty authorisation, so
 * `evcc boot lock-platform` disables it at every boot, first thing in evcc-boot.service (`lockPlatformHierarchy`).
 */
export type HierarchyErrorCode = 'KEYS_HIERARCHY_LOCKED' | 'KEYS_ESCROW_INVALID' | 'KEYS_PLATFORM_ENABLED';

export const TPM_CC_NV_INCREMENT = 0x134;
const TPM_CC_POLICY_COMMAND_CODE = 0x16c;
/** Escrow record in the data dir (public: ciphertext only); also written to the backend export. */
export const HIERARCHY_ESCROW_FILE = 'tpm/hierarchy-escrow.json';
export const HIERARCHIES: readonly Hierarchy[] = ['owner', 'endorsement', 'lockout'];

const u32 = (v: number): Uint8Array => Uint8Array.of(v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);

/** PolicyCommandCode: H(old || TPM_CC_PolicyCommandCode || code) (TPM 2.0 Part 3 §23.11). */
export function policyCommandCode(old: Uint8Array, code: number): Uint8Array {
  return sha256(new Uint8Array([...old, ...u32(TPM_CC_POLICY_COMMAND_CODE), ...u32(code)]));
}

/** Owner policy: A (PolicyAuthorize by the OEM, i.e. an OEM-approved state) ; PolicyCommandCode(NV_Increment). */
export function ownerIncrementPolicy(keysPolicy: Uint8Array): Uint8Array {
  return policyCommandCode(keysPolicy, TPM_CC_NV_INCREMENT);
}

const b64 = z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/);
const EscrowEntry = z.object({ ephemeralPublic: b64, iv: b64, ciphertext: b64, tag: b64 });
type EscrowEntry = z.infer<typeof EscrowEntry>;
export const HierarchyEscrow = z.object({
  format: z.literal('evcc-tpm-hierarchy-escrow/1'),
  /** The vehicle's storage key name: binds each entry to this TPM (part of the AEAD's associated data). */
  storageKeyName: z.string().regex(/^([0-9a-f]{2})+$/),
  /** SHA-256 of the escrow public key (SPKI DER), hex: which OEM key opens it. */
  escrowKey: z.string().regex(/^[0-9a-f]{64}$/),
  entries: z.object({ owner: EscrowEntry.optional(), endorsement: EscrowEntry.optional(), lockout: EscrowEntry.optional() }),
});
export type HierarchyEscrow = z.infer<typeof HierarchyEscrow>;

const info = (hierarchy: Hierarchy, storageKeyName: string): Buffer => Buffer.from(`evcc tpm hierarchy escrow v1|${hierarchy}|${storageKeyName}`);

function escrowKeyId(pem: string): string {
  return toHex(sha256(new Uint8Array(createPublicKey(pem).export({ type: 'spki', format: 'der' }))));
}

function checkEscrowKey(pem: string): void {
  let ok = false;
  try {
    const k = createPublicKey(pem);
    ok = k.asymmetricKeyType === 'ec' && k.asymmetricKeyDetails?.namedCurve === 'prime256v1';
  } catch {
    ok = false;
  }
  if (!ok) throw new EvccError('CONFIG_INVALID', 'hierarchy escrow key must be a P-256 public key (PEM)');
}

function encryptEntry(secret: Uint8Array, escrowPublicKeyPem: string, hierarchy: Hierarchy, storageKeyName: string): EscrowEntry {
  const eph = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const z = diffieHellman({ privateKey: eph.privateKey, publicKey: createPublicKey(escrowPublicKeyPem) });
  const ephemeralPublic = eph.publicKey.export({ type: 'spki', format: 'der' });
  const key = Buffer.from(hkdfSync('sha256', z, ephemeralPublic, info(hierarchy, storageKeyName), 32));
  z.fill(0);
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(info(hierarchy, storageKeyName));
  const ciphertext = Buffer.concat([c.update(secret), c.final()]);
  key.fill(0);
  return { ephemeralPublic: ephemeralPublic.toString('base64'), iv: iv.toString('base64'), ciphertext: ciphertext.toString('base64'), tag: c.getAuthTag().toString('base64') };
}

/** OEM backend side: the hierarchy authorisations of one vehicle from its escrow record (KEYS_ESCROW_INVALID else). */
export function openHierarchyEscrow(escrow: unknown, escrowPrivateKeyPem: string): Partial<Record<Hierarchy, Uint8Array>> {
  const r = HierarchyEscrow.safeParse(escrow);
  if (!r.success) throw new EvccError('KEYS_ESCROW_INVALID', 'hierarchy escrow record is malformed');
  const priv = createPrivateKey(escrowPrivateKeyPem);
  if (escrowKeyId(createPublicKey(priv).export({ type: 'spki', format: 'pem' }).toString()) !== r.data.escrowKey) {
    throw new EvccError('KEYS_ESCROW_INVALID', 'hierarchy escrow was made for another escrow key');
  }
  const out: Partial<Record<Hierarchy, Uint8Array>> = {};
  for (const h of HIERARCHIES) {
    const e = r.data.entries[h];
    if (!e) continue;
    try {
      const ephemeralPublic = Buffer.from(e.ephemeralPublic, 'base64');
      const z = diffieHellman({ privateKey: priv, publicKey: createPublicKey({ key: ephemeralPublic, format: 'der', type: 'spki' }) });
      const key = Buffer.from(hkdfSync('sha256', z, ephemeralPublic, info(h, r.data.storageKeyName), 32));
      const d = createDecipheriv('aes-256-gcm', key, Buffer.from(e.iv, 'base64'));
      d.setAAD(info(h, r.data.storageKeyName));
      d.setAuthTag(Buffer.from(e.tag, 'base64'));
      out[h] = new Uint8Array(Buffer.concat([d.update(Buffer.from(e.ciphertext, 'base64')), d.final()]));
      key.fill(0);
      z.fill(0);
    } catch (err) {
      throw new EvccError('KEYS_ESCROW_INVALID', `hierarchy escrow entry ${h} does not decrypt`, { hierarchy: h }, { cause: err });
    }
  }
  return out;
}

export interface HierarchySetupDeps {
  tpm: Tpm;
  data: FileStore;
  log: Logger;
}

/**
 * Sets the owner policy and the owner, endorsement and lockout authorisation (each only while still empty, so a
 * re-run completes an interrupted set-up and changes nothing else). Order per hierarchy, crash-safe: the escrow
 * entry is written before the TPM takes the value; the owner policy is set before the owner authorisation (it needs
 * the owner authorisation, empty until then). Returns what it set.
 */
export async function setUpHierarchies(d: HierarchySetupDeps, record: ProvisioningRecord, escrowPublicKeyPem: string): Promise<string[]> {
  checkEscrowKey(escrowPublicKeyPem);
  const { tpm, data, log } = d;
  const state = await tpm.hierarchyState();
  const isSet: Record<Hierarchy, boolean> = { owner: state.ownerAuthSet, endorsement: state.endorsementAuthSet, lockout: state.lockoutAuthSet };
  if (HIERARCHIES.every((h) => isSet[h])) return [];

  const existing = await data.read(HIERARCHY_ESCROW_FILE);
  let escrow: HierarchyEscrow = existing
    ? parseJson(HierarchyEscrow, existing, 'hierarchy escrow record', 'KEYS_ESCROW_INVALID')
    : { format: 'evcc-tpm-hierarchy-escrow/1', storageKeyName: record.storageKey.name, escrowKey: escrowKeyId(escrowPublicKeyPem), entries: {} };
  if (escrow.storageKeyName !== record.storageKey.name || escrow.escrowKey !== escrowKeyId(escrowPublicKeyPem)) {
    throw new EvccError('KEYS_PROVISION_CONFLICT', 'hierarchy escrow record belongs to another storage key or escrow key: refusing to overwrite');
  }
  const done: string[] = [];
  if (!isSet.owner) {
    const policy = ownerIncrementPolicy(fromHex(record.policies.keys));
    // The TPM's own arithmetic must agree with the offline one, or no session could ever satisfy the owner policy.
    const trial = await tpm.startTrialSession();
    const steps: PolicyStep[] = [{ kind: 'authorize', approvedPolicy: new Uint8Array(0), policyRef: fromHex(record.policyRef), keyName: fromHex(record.oemPolicyKey.name) },
      { kind: 'commandCode', code: TPM_CC_NV_INCREMENT }];
    const digest = await tpm.policy(trial, steps);
    await tpm.flushSession(trial);
    if (!digest || toHex(digest) !== toHex(policy)) throw new EvccError('KEYS_PROVISION_CONFLICT', 'owner policy: trial session differs from the offline computation');
    await tpm.setOwnerPolicy(policy);
    done.push('owner-policy');
    log.info({ policy: toHex(policy) }, 'owner policy set: the anti-rollback counter is raised only in an OEM-approved state (PolicyAuthorize ; PolicyCommandCode NV_Increment)');
  }
  for (const h of HIERARCHIES) {
    if (isSet[h]) continue;
    const secret = new Uint8Array(randomBytes(32));
    try {
      escrow = { ...escrow, entries: { ...escrow.entries, [h]: encryptEntry(secret, escrowPublicKeyPem, h, record.storageKey.name) } };
      await data.writeAtomic(HIERARCHY_ESCROW_FILE, jsonBytes(escrow), { mode: 0o644 });
      await tpm.changeHierarchyAuth(h, secret);
    } finally {
      secret.fill(0);
    }
    done.push(`${h}-auth`);
    log.info({ hierarchy: h, escrowKey: escrow.escrowKey.slice(0, 16) }, `${h} authorisation set (random, escrowed to the OEM only)`);
  }
  return done;
}

/** Reads the escrow record for the backend export (undefined before the set-up). */
export async function readHierarchyEscrow(data: FileStore): Promise<HierarchyEscrow | undefined> {
  const b = await data.read(HIERARCHY_ESCROW_FILE);
  return b ? parseJson(HierarchyEscrow, b, 'hierarchy escrow record', 'KEYS_ESCROW_INVALID') : undefined;
}

/**
 * `evcc boot lock-platform`: disables the platform hierarchy for this boot (TPM2_HierarchyControl, empty platform
 * authorisation after every Startup). Idempotent; the result says whether this call did it. Without it, any code
 * running as the TPM's user could TPM2_Clear the owner hierarchy (the vehicle's keys) through the platform.
 */
export async function lockPlatformHierarchy(d: { tpm: Tpm; log: Logger }): Promise<{ platform: 'disabled'; action: 'disabled' | 'already' }> {
  const before = await d.tpm.hierarchyState();
  if (!before.phEnable) {
    d.log.info({}, 'platform hierarchy already disabled this boot');
    return { platform: 'disabled', action: 'already' };
  }
  await d.tpm.disablePlatformHierarchy();
  if ((await d.tpm.hierarchyState()).phEnable) throw new EvccError('KEYS_PLATFORM_ENABLED', 'platform hierarchy still enabled after TPM2_HierarchyControl');
  d.log.info({}, 'platform hierarchy disabled until the next TPM Startup');
  return { platform: 'disabled', action: 'disabled' };
}

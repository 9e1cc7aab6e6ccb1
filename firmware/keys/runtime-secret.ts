import { hkdfSync, randomBytes } from 'node:crypto';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import { HmacIntegrity, type IntegrityGuard } from '../pki/store.ts';
import type { FileStore } from '../../hal/store/types.ts';
import type { KeyService } from './key-service.ts';
import { DATA, jsonBytes, ProvisioningRecord } from './layout.ts';
import { fromHex, toHex } from './policy.ts';
import { objectName } from './duplicate.ts';

/**
 * The TPM-sealed runtime secret: 32 random bytes sealed at provisioning as a keyedhash data object under the
 * storage key with authPolicy A (the OEM-signed state policy, TPM.md §1 — the same direct binding as the contract
 * key). The runtime unseals it once at start through the state policy, keeps it in memory only and derives its
 * purpose keys with HKDF-SHA256 (RFC 5869), one `info` string per purpose:
 *   - the certificate store's integrity key (V2G roots: whoever holds it could forge the trust anchors);
 *   - the passphrase of the OEM-backend link key (encrypted PKCS#8 on disk).
 * In a tampered or rolled-back state the TPM refuses the unseal (TPM_POLICY_NOT_APPROVED 0x1C4 / TPM_POLICY_ROLLBACK
 * 0x126), so neither key exists there: the store cannot be verified and PnC is refused (vehicle-trust.ts).
 * The secret is never written anywhere in clear: it reaches tpm2_create through stdin and comes back from
 * tpm2_unseal through stdout; only the TPM-wrapped blob is on disk. On the TPM bus it travels encrypted: both
 * commands run in the policy session salted with the SRK, which tpm2-tools starts with parameter encryption
 * (`tpm2_startauthsession -c`: AES-CFB on the first command/response parameter) — tapped and asserted in
 * test/integration/tpm-secret.test.ts (an unsalted session would show it in clear).
 */
export const RUNTIME_SECRET_BYTES = 32;

/** HKDF `info` per purpose; a new purpose gets a new string, never a reused one. */
export const RUNTIME_SECRET_PURPOSES = {
  pkiStoreIntegrity: 'evcc pki-store integrity v1',
  otaLinkKeyPassphrase: 'evcc ota link-key passphrase v1',
  otaBackendKeyIntegrity: 'evcc ota backend-key integrity v1',
  /** AES-256-GCM key of the encrypted session history (firmware/log/session-history.ts). */
  sessionHistoryEncryption: 'evcc session-history aes-256-gcm v1',
} as const;
export type RuntimeSecretPurpose = keyof typeof RUNTIME_SECRET_PURPOSES;

/** TPM context name of the sealed object while it is loaded (run dir; removed right after the unseal). */
const CONTEXT = 'runtime-secret';

/** The unsealed secret, in memory only. `destroy()` zeroes it; every derived key is a fresh copy. */
export class RuntimeSecret {
  private destroyed = false;
  private constructor(private readonly secret: Uint8Array) {}

  /** Takes ownership of `bytes` (zeroed by `destroy`). */
  static fromBytes(bytes: Uint8Array): RuntimeSecret {
    if (bytes.length !== RUNTIME_SECRET_BYTES) {
      throw new EvccError('KEYS_RUNTIME_SECRET_MALFORMED', `runtime secret must be ${RUNTIME_SECRET_BYTES} bytes`, { length: bytes.length });
    }
    return new RuntimeSecret(bytes);
  }

  /** HKDF-SHA256(ikm = secret, salt = empty, info = purpose string), `length` bytes. */
  derive(purpose: RuntimeSecretPurpose, length = 32): Uint8Array {
    if (this.destroyed) throw new EvccError('KEYS_RUNTIME_SECRET_DESTROYED', 'runtime secret was destroyed');
    return new Uint8Array(hkdfSync('sha256', this.secret, new Uint8Array(0), RUNTIME_SECRET_PURPOSES[purpose], length));
  }

  /** The certificate store's integrity guard (HMAC-SHA256 with the derived store key). */
  storeIntegrity(): TpmSealedIntegrity {
    return new TpmSealedIntegrity(this.derive('pkiStoreIntegrity'));
  }

  /** Passphrase of the encrypted PKCS#8 OEM-backend link key (hex of 32 derived bytes). */
  linkKeyPassphrase(): string {
    const k = this.derive('otaLinkKeyPassphrase');
    const s = Buffer.from(k).toString('hex');
    k.fill(0);
    return s;
  }

  destroy(): void {
    this.secret.fill(0);
    this.destroyed = true;
  }
}

/**
 * `IntegrityGuard` of the vehicle's certificate store whose key exists only in a good, OEM-approved state: HMAC-SHA256
 * keyed with HKDF(runtime secret, 'evcc pki-store integrity v1'). Its own scheme name, so a store written under
 * another guard (a bench key from the environment) is refused as PKI_STORE_TAMPERED instead of being re-keyed.
 */
export class TpmSealedIntegrity implements IntegrityGuard {
  static readonly SCHEME = 'hmac-sha256/tpm-sealed-v1';
  readonly scheme = TpmSealedIntegrity.SCHEME;
  private readonly hmac: HmacIntegrity;
  constructor(derivedKey: Uint8Array) {
    this.hmac = new HmacIntegrity(derivedKey);
    derivedKey.fill(0);
  }
  tag(data: Uint8Array): Promise<Uint8Array> {
    return this.hmac.tag(data);
  }
  verify(data: Uint8Array, tag: Uint8Array): Promise<boolean> {
    return this.hmac.verify(data, tag);
  }
}

/**
 * Provisioning step (first good boot, like the OEM provisioning key: the storage key's policy needs the approved
 * state): seals 32 fresh random bytes under the storage key with policy A and records its name. Returns the
 * updated record. Refuses to replace an existing sealed secret (that would orphan every store tagged with it).
 */
export async function createRuntimeSecret(deps: { keys: KeyService; data: FileStore; log: Logger }, record: ProvisioningRecord): Promise<ProvisioningRecord> {
  const { keys, data, log } = deps;
  if (record.runtimeSecret) {
    throw new EvccError('KEYS_PROVISION_CONFLICT', 'a sealed runtime secret already exists: refusing to replace it (its store would become unverifiable)');
  }
  const oldPub = await data.read(DATA.runtimeSecret('pub'));
  const oldPriv = await data.read(DATA.runtimeSecret('priv'));
  if (oldPub && oldPriv) {
    // Interrupted provisioning (blob written, record not yet): adopt the blob if it is what we seal, never replace it.
    const why = sealedObjectMismatch(oldPub, fromHex(record.policies.keys));
    if (why) throw new EvccError('KEYS_PROVISION_CONFLICT', `a runtime-secret blob not in the provisioning record is in the data dir and is not ours (${why}): refusing to replace or adopt it`);
    const next: ProvisioningRecord = { ...record, runtimeSecret: { name: toHex(objectName(oldPub)) } };
    await data.writeAtomic(DATA.record, jsonBytes(next), { mode: 0o644 });
    log.warn({ name: next.runtimeSecret!.name }, 'runtime secret from an interrupted provisioning adopted (sealed object with policy A)');
    return next;
  }
  const secret = new Uint8Array(randomBytes(RUNTIME_SECRET_BYTES));
  let blob;
  try {
    blob = await keys.sealUnderStorageKey(secret, fromHex(record.policies.keys));
  } finally {
    secret.fill(0);
  }
  const why = sealedObjectMismatch(blob.public, fromHex(record.policies.keys));
  if (why) throw new EvccError('KEYS_PROVISION_CONFLICT', `the TPM created an unexpected runtime-secret object (${why})`);
  await data.writeAtomic(DATA.runtimeSecret('pub'), blob.public, { mode: 0o644 });
  await data.writeAtomic(DATA.runtimeSecret('priv'), blob.private, { mode: 0o600 });
  const next: ProvisioningRecord = { ...record, runtimeSecret: { name: toHex(objectName(blob.public)) } };
  await data.writeAtomic(DATA.record, jsonBytes(next), { mode: 0o644 });
  log.info({ name: next.runtimeSecret!.name }, 'runtime secret sealed in the TPM under the storage key (policy A)');
  return next;
}

const TPM_ALG_KEYEDHASH = 0x0008;
const TPMA = { fixedTPM: 0x2, fixedParent: 0x10, userWithAuth: 0x40, decrypt: 0x20000, sign: 0x40000 } as const;

/**
 * Why a TPM2B_PUBLIC is not a sealed data object bound to `authPolicy` (keyedhash, sign and decrypt clear,
 * fixedTPM|fixedParent, no userWithAuth), or undefined when it is.
 */
export function sealedObjectMismatch(tpm2bPublic: Uint8Array, authPolicy: Uint8Array): string | undefined {
  const b = Buffer.from(tpm2bPublic);
  if (b.length < 12 || b.readUInt16BE(0) !== b.length - 2) return 'malformed public area';
  if (b.readUInt16BE(2) !== TPM_ALG_KEYEDHASH) return 'not a keyedhash object';
  const attrs = b.readUInt32BE(6);
  if (attrs & (TPMA.sign | TPMA.decrypt)) return 'a key, not a sealed data object';
  if (attrs & TPMA.userWithAuth) return 'usable with a password (userWithAuth)';
  if ((attrs & (TPMA.fixedTPM | TPMA.fixedParent)) !== (TPMA.fixedTPM | TPMA.fixedParent)) return 'duplicable';
  const n = b.readUInt16BE(10);
  if (12 + n > b.length || toHex(b.subarray(12, 12 + n)) !== toHex(authPolicy)) return 'authPolicy is not the state policy A';
  return undefined;
}

/**
 * Runtime start: unseals the runtime secret through the state policy. Throws KEYS_RUNTIME_SECRET_MISSING when it
 * was never provisioned, KEYS_NOT_BOOTED without a measured boot, and the TPM's typed refusal (TPM_POLICY_NOT_APPROVED,
 * TPM_POLICY_ROLLBACK, …, with `details.rc`) in a state the OEM did not approve.
 */
export async function unsealRuntimeSecret(deps: { keys: KeyService; data: FileStore; log: Logger }): Promise<RuntimeSecret> {
  const { keys, data, log } = deps;
  const pub = await data.read(DATA.runtimeSecret('pub'));
  const priv = await data.read(DATA.runtimeSecret('priv'));
  if (!pub || !priv) {
    throw new EvccError('KEYS_RUNTIME_SECRET_MISSING', 'no sealed runtime secret (run evcc tpm provision after the first good boot)');
  }
  const expected = keys.provisioning.runtimeSecret?.name;
  if (!expected || toHex(objectName(pub)) !== expected) {
    // A swapped public area would name another object: refuse before the TPM sees it.
    throw new EvccError('KEYS_RUNTIME_SECRET_MISSING', 'sealed runtime secret does not match the provisioning record', { expected });
  }
  try {
    const bytes = await keys.unsealWithStatePolicy({ public: pub, private: priv }, CONTEXT);
    log.info({}, 'runtime secret unsealed (state approved by the OEM)');
    return RuntimeSecret.fromBytes(bytes);
  } catch (err) {
    const e = err as EvccError;
    log.error({ code: e.code, rc: e.details?.rc, cp: 'KEYS-SECRET-REFUSED' }, 'runtime secret refused by the TPM: no store key, no link key in this state');
    throw err;
  }
}

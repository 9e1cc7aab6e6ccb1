import { hkdfSync, randomBytes } from 'node:crypto';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { FileStore } from '../../hal/store/types.ts';
import type { Tpm } from '../../hal/tpm/types.ts';
import { objectName } from './duplicate.ts';
import { DATA, jsonBytes, parseJson, ProvisioningRecord } from './layout.ts';
import { fromHex, toHex } from './policy.ts';
import { sealedObjectMismatch } from './runtime-secret.ts';

/**
 * The OEM link's own credential, independent of the software state (README "OEM link credential"): 32 random bytes
 * sealed under the SRK with authPolicy = PolicyCommandCode(TPM2_Unseal) — no PCR, no signed state — whose HKDF gives
 * the passphrase of the encrypted PKCS#8 link key. So a vehicle whose measured boot failed still opens its link,
 * reports that it is degraded and answers attestation, while the contract and provisioning keys (policy A) stay
 * locked. Same handling as the runtime secret: in through stdin, out through stdout, parameter-encrypted on the TPM
 * bus (salted session), only the TPM-wrapped blob on disk, bound to this TPM (fixedTPM|fixedParent).
 */
export const LINK_SECRET_BYTES = 32;
const TPM_CC_UNSEAL = 0x15e;
const PASSPHRASE_INFO = 'evcc ota link-key passphrase v2 (state-independent)';
const CONTEXT = 'link-secret';

async function unsealPolicy(tpm: Tpm): Promise<Uint8Array> {
  const trial = await tpm.startTrialSession();
  try {
    const d = await tpm.policy(trial, [{ kind: 'commandCode', code: TPM_CC_UNSEAL }]);
    if (!d) throw new EvccError('TPM_TOOL_FAILED', 'trial session returned no digest');
    return d;
  } finally {
    await tpm.flushSession(trial);
  }
}

/** Provisioning step (any state): seals the link secret under the SRK. Idempotent through the record. */
export async function createLinkSecret(deps: { tpm: Tpm; data: FileStore; log: Logger }, record: ProvisioningRecord): Promise<ProvisioningRecord> {
  const { tpm, data, log } = deps;
  if (record.linkSecret) return record;
  const policy = await unsealPolicy(tpm);
  const secret = new Uint8Array(randomBytes(LINK_SECRET_BYTES));
  let blob;
  try {
    blob = await tpm.createSealed({ persistent: record.srk.handle }, { kind: 'empty' }, { data: secret, authPolicy: policy });
  } finally {
    secret.fill(0);
  }
  const why = sealedObjectMismatch(blob.public, policy);
  if (why) throw new EvccError('KEYS_PROVISION_CONFLICT', `the TPM created an unexpected link-secret object (${why})`);
  await data.writeAtomic(DATA.linkSecret('pub'), blob.public, { mode: 0o644 });
  await data.writeAtomic(DATA.linkSecret('priv'), blob.private, { mode: 0o600 });
  const next: ProvisioningRecord = { ...record, linkSecret: { name: toHex(objectName(blob.public)) } };
  await data.writeAtomic(DATA.record, jsonBytes(next), { mode: 0o644 });
  log.info({ name: next.linkSecret!.name, cp: 'KEYS-LINK-SECRET-SEALED' }, 'OEM link secret sealed in the TPM under the SRK (usable in any software state)');
  return next;
}

/**
 * The link-key passphrase (hex of HKDF-SHA256(link secret, PASSPHRASE_INFO)), unsealed in a salted policy session;
 * undefined for a vehicle provisioned before the link secret existed (its link key still sits under the state-bound
 * runtime secret). The secret itself is wiped before returning.
 */
export async function linkKeyPassphrase(deps: { tpm: Tpm; data: FileStore; log: Logger }, record: ProvisioningRecord): Promise<string | undefined> {
  const { tpm, data, log } = deps;
  if (!record.linkSecret) return undefined;
  const pub = await data.read(DATA.linkSecret('pub'));
  const priv = await data.read(DATA.linkSecret('priv'));
  if (!pub || !priv || toHex(objectName(pub)) !== record.linkSecret.name) {
    throw new EvccError('KEYS_LINK_SECRET_MISSING', 'sealed OEM link secret missing or not the provisioned one', { expected: record.linkSecret.name });
  }
  const session = await tpm.startPolicySession({ handle: record.srk.handle, name: fromHex(record.srk.name) });
  let secret: Uint8Array | undefined;
  try {
    await tpm.load({ persistent: record.srk.handle }, { kind: 'empty' }, { public: pub, private: priv }, CONTEXT);
    await tpm.policy(session, [{ kind: 'commandCode', code: TPM_CC_UNSEAL }]);
    secret = await tpm.unseal({ context: CONTEXT }, { kind: 'policy', session });
    if (secret.length !== LINK_SECRET_BYTES) throw new EvccError('KEYS_LINK_SECRET_MISSING', 'sealed OEM link secret has the wrong size', { length: secret.length });
    const k = Buffer.from(hkdfSync('sha256', secret, new Uint8Array(0), PASSPHRASE_INFO, 32));
    const passphrase = k.toString('hex');
    k.fill(0);
    log.info({ cp: 'KEYS-LINK-SECRET-UNSEALED' }, 'OEM link secret unsealed (independent of the software state)');
    return passphrase;
  } finally {
    secret?.fill(0);
    if (tpm.isSessionLive(session)) await tpm.flushSession(session).catch(() => undefined);
    await tpm.forgetContext(CONTEXT);
  }
}

/**
 * The runtime's call, before anything state-bound: the provisioning record, then the passphrase. Never throws — a
 * vehicle without the link secret (provisioned before it, or a TPM failure) is logged and gets undefined.
 */
export async function stateIndependentLinkPassphrase(deps: { tpm: Tpm; data: FileStore; log: Logger }): Promise<string | undefined> {
  try {
    const record = parseJson(ProvisioningRecord, await deps.data.read(DATA.record), 'TPM provisioning record', 'KEYS_NOT_PROVISIONED');
    const passphrase = await linkKeyPassphrase(deps, record);
    if (!passphrase) deps.log.warn({ cp: 'KEYS-LINK-SECRET-ABSENT' }, 'no state-independent OEM link secret (provisioned before it existed: run evcc tpm provision, then evcc pki link-key import): the link key opens only in an approved state');
    return passphrase;
  } catch (err) {
    const e = err as EvccError;
    deps.log.error({ code: e.code, rc: e.details?.rc, cp: 'KEYS-LINK-SECRET-REFUSED' }, `OEM link secret not unsealed: ${e.message}`);
    return undefined;
  }
}

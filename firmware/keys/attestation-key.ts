import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { FileStore } from '../../hal/store/types.ts';
import type { PcrBank, Tpm } from '../../hal/tpm/types.ts';
import { eccPublicPem, objectName, parseEccPublic } from './duplicate.ts';
import { DATA, jsonBytes, type ProvisioningRecord } from './layout.ts';
import { fromHex, TPMA, toHex } from './policy.ts';

/**
 * The attestation key (AK): an ECC P-256 ECDSA-SHA256 signing key created in the TPM at provisioning, child of the
 * SRK (owner storage primary, TPM.md §2) — not of the storage key, whose policy needs the OEM-approved state: the
 * AK must quote every boot, a tampered one above all. `restricted|sign`: the TPM signs with it only structures it
 * generated itself (TPMS_ATTEST from TPM2_Quote) or digests it hashed and ticketed, never a caller's digest that
 * starts with TPM_GENERATED_VALUE, so a quote cannot be forged with it even by root in any state. `userwithauth` with
 * an empty authValue: using it needs no secret, because what it signs can only tell the truth about the PCRs.
 * fixedTPM|fixedParent: it never leaves this TPM, so a quote names this vehicle. Only TPM-wrapped blobs on disk.
 */
export const ATTESTATION_KEY_ATTRIBUTES = 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign';
const CONTEXT = 'attestation-key';

export interface Quote {
  /** TPMS_ATTEST exactly as the TPM signed it. */
  attest: Uint8Array;
  /** ECDSA-SHA256 over `attest`, DER. */
  signature: Uint8Array;
  /** The quoted PCRs' values (ascending index). */
  pcrs: { index: number; value: Uint8Array }[];
}

/** Provisioning step (any state; idempotent through the record): creates the AK and records its public part. */
export async function createAttestationKey(deps: { tpm: Tpm; data: FileStore; log: Logger }, record: ProvisioningRecord): Promise<ProvisioningRecord> {
  const { tpm, data, log } = deps;
  if (record.attestationKey) return record;
  const blob = await tpm.create({ persistent: record.srk.handle }, { kind: 'empty' }, { alg: 'ecc256', scheme: 'ecdsa-sha256:null', attributes: ATTESTATION_KEY_ATTRIBUTES });
  const area = parseEccPublic(blob.public);
  const need = TPMA.restricted | TPMA.sign | TPMA.fixedTPM | TPMA.fixedParent | TPMA.sensitiveDataOrigin;
  if ((area.attributes & need) !== need || area.attributes & TPMA.decrypt) throw new EvccError('KEYS_PROVISION_CONFLICT', 'the TPM created an attestation key without the restricted signing attributes');
  const pem = eccPublicPem(area);
  await data.writeAtomic(DATA.attestationKey('pub'), blob.public, { mode: 0o644 });
  await data.writeAtomic(DATA.attestationKey('priv'), blob.private, { mode: 0o600 });
  await data.writeAtomic(DATA.attestationKey('pub.pem'), pem, { mode: 0o644 });
  const next: ProvisioningRecord = { ...record, attestationKey: { name: toHex(objectName(blob.public)), public: toHex(blob.public), publicKeyPem: pem } };
  await data.writeAtomic(DATA.record, jsonBytes(next), { mode: 0o644 });
  log.info({ name: next.attestationKey!.name, cp: 'KEYS-AK-CREATED' }, 'attestation key created in the TPM under the SRK (restricted signing key, independent of the software state)');
  return next;
}

/**
 * TPM2_Quote over `pcrs` with the AK, qualified by the verifier's nonce. The AK is loaded under the SRK once per boot
 * (context in the run dir); a public area on disk that is not the recorded one is refused before the TPM sees it.
 */
export async function quote(deps: { tpm: Tpm; data: FileStore }, record: ProvisioningRecord, nonce: Uint8Array, pcrs: number[], bank: PcrBank = 'sha256'): Promise<Quote> {
  const { tpm, data } = deps;
  const ak = record.attestationKey;
  if (!ak) throw new EvccError('KEYS_ATTESTATION_KEY_MISSING', 'no attestation key (run evcc tpm provision)');
  if (!(await tpm.hasContext(CONTEXT))) {
    const pub = await data.read(DATA.attestationKey('pub'));
    const priv = await data.read(DATA.attestationKey('priv'));
    if (!pub || !priv || toHex(objectName(pub)) !== ak.name) throw new EvccError('KEYS_ATTESTATION_KEY_MISSING', 'attestation key blob missing or not the provisioned one', { expected: ak.name });
    await tpm.load({ persistent: record.srk.handle }, { kind: 'empty' }, { public: pub, private: priv }, CONTEXT);
  }
  const sorted = [...new Set(pcrs)].sort((a, b) => a - b);
  let r;
  try {
    r = await tpm.quote({ context: CONTEXT }, { kind: 'empty' }, bank, sorted, nonce);
  } catch (err) {
    // A context from before a TPM reset no longer loads: drop it so the next quote loads the blob again.
    await tpm.forgetContext(CONTEXT);
    throw err;
  }
  return { attest: r.attest, signature: r.signature, pcrs: sorted.map((index, i) => ({ index, value: r.pcrValues[i]! })) };
}

/** The AK's TPM2B_PUBLIC from the record (for the backend export). */
export function attestationKeyPublic(record: ProvisioningRecord): Uint8Array | undefined {
  return record.attestationKey ? fromHex(record.attestationKey.public) : undefined;
}

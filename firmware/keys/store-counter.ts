import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { FileStore } from '../../hal/store/types.ts';
import type { Tpm } from '../../hal/tpm/types.ts';
import type { StoreVersionCounter } from '../pki/store.ts';
import type { KeyService } from './key-service.ts';
import { DATA, jsonBytes, TPM_LAYOUT, type ProvisioningRecord } from './layout.ts';
import { concat, fromHex, sha256, toHex, u16, u32 } from './policy.ts';

/**
 * The certificate store's version counter (firmware/pki/store.ts, issue #13 item 4): a TPM NV counter at
 * 0x01800102, `nt=counter|policywrite|authread|no_da` with write policy A = PolicyAuthorize(OEM, policyRef).
 *
 * Who may raise it: only a policy session in an OEM-approved state — the same state in which the TPM unseals the
 * store's integrity key, i.e. exactly whoever can write a valid store anyway. Not the owner: an owner-written
 * counter would let any process with owner authorisation raise it and so make the store unopenable (a denial of
 * service; it could never roll the store back, a counter only goes up). Reading needs no authorisation (empty
 * index auth), and `no_da`: policy failures do not count against dictionary-attack lockout anyway, and no
 * password exists to guess. A redefined index (owner deletes and defines it again) has another name — refused
 * at every read — and a counter restarts at the TPM's highest counter value ever, never lower.
 *
 * Defined at provisioning once a signed release has booted (`evcc tpm provision` after the first good boot, like
 * the runtime secret): its first increment, which a counter needs before it can be read, needs the approved state.
 */
export const STORE_COUNTER_ATTRIBUTES = 0x02040018; // NO_DA | AUTHREAD | TPM_NT_COUNTER | POLICYWRITE
const TPMA_NV_WRITTEN = 0x20000000;
const TPM_ALG_SHA256 = 0x000b;

/** The index's name once written: 000B || H(index || 000B || attributes || TPM2B(authPolicy) || dataSize 8). */
export function storeCounterName(index: number, writePolicy: Uint8Array): Uint8Array {
  return concat(u16(TPM_ALG_SHA256), sha256(u32(index), u16(TPM_ALG_SHA256), u32((STORE_COUNTER_ATTRIBUTES | TPMA_NV_WRITTEN) >>> 0), u16(writePolicy.length), writePolicy, u16(8)));
}

/**
 * Provisioning step (after the first good boot): defines the counter with write policy A unless an interrupted run
 * did, raises it once under the state policy so it can be read, checks its name against the offline computation
 * (the attributes and the policy are what we asked for) and records it. Returns the updated record.
 */
export async function provisionStoreCounter(deps: { tpm: Tpm; keys: KeyService; data: FileStore; log: Logger }, record: ProvisioningRecord): Promise<ProvisioningRecord> {
  const { tpm, keys, data, log } = deps;
  const index = TPM_LAYOUT.storeCounterIndex;
  const policy = fromHex(record.policies.keys);
  const expected = toHex(storeCounterName(index, policy));
  if (!(await tpm.handles('nv-index')).includes(index)) {
    await tpm.nvDefineCounter(index, { writePolicy: policy });
  }
  let value: bigint;
  try {
    value = await tpm.nvReadCounter(index);
  } catch (err) {
    if ((err as EvccError).code !== 'TPM_NV_UNINITIALIZED') throw err;
    await keys.incrementWithStatePolicy(index); // a counter reads only after its first increment (TPM.md pitfall 10)
    value = await tpm.nvReadCounter(index);
  }
  const name = toHex(await tpm.nvName(index));
  if (name !== expected) {
    throw new EvccError('KEYS_PROVISION_CONFLICT', `NV index 0x${index.toString(16)} is not the store counter we define (name ${name.slice(0, 16)}…, expected ${expected.slice(0, 16)}…): refusing to use it`, { index });
  }
  const next: ProvisioningRecord = { ...record, storeCounter: { index, name, initialValue: String(value) } };
  await data.writeAtomic(DATA.record, jsonBytes(next), { mode: 0o644 });
  log.info({ index: `0x${index.toString(16)}`, value: String(value) }, 'certificate-store version counter defined (written only in an OEM-approved state)');
  return next;
}

/** The store's StoreVersionCounter on the TPM: read by anyone, raised through the key service's state policy. */
export class TpmStoreCounter implements StoreVersionCounter {
  readonly id: string;
  readonly initial: bigint;
  private checked = false;

  constructor(private readonly tpm: Tpm, private readonly keys: KeyService, private readonly spec: NonNullable<ProvisioningRecord['storeCounter']>) {
    this.id = `tpm-nv:0x${spec.index.toString(16)}`;
    this.initial = BigInt(spec.initialValue);
  }

  /** The counter of a provisioning record, or undefined for a vehicle provisioned before it existed. */
  static of(keys: KeyService): TpmStoreCounter | undefined {
    const spec = keys.provisioning.storeCounter;
    return spec ? new TpmStoreCounter(keys.tpm, keys, spec) : undefined;
  }

  async read(): Promise<bigint> {
    if (!this.checked) {
      // Once per process: an index redefined with other attributes (e.g. an ordinary, writable one) has another name.
      const name = toHex(await this.tpm.nvName(this.spec.index));
      if (name !== this.spec.name) {
        throw new EvccError('PKI_STORE_TAMPERED', `store version counter ${this.id} is not the index provisioned (name ${name.slice(0, 16)}…)`, { counter: this.id });
      }
      this.checked = true;
    }
    return this.tpm.nvReadCounter(this.spec.index);
  }

  increment(): Promise<void> {
    return this.keys.incrementWithStatePolicy(this.spec.index);
  }
}

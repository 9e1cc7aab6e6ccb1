import { EvccError } from '../core/errors.ts';
import type { KeyService } from '../firmware/keys/key-service.ts';
import { DATA, parseJson, ProvisioningRecord } from '../firmware/keys/layout.ts';
import type { BootDeps } from './measured-boot.ts';
import { bootState } from './measured-boot.ts';

/**
 * A/B commit (ARCHITECTURE.md §4; TPM.md pitfall 10): raise the NV anti-rollback counter to the running release's
 * version, only after this release proved it can sign through the TPM. From then on every older release's signed
 * policy fails in TPM2_PolicyNV (rollback refused by the TPM, N18/N19) — which is why it must not happen earlier.
 */
export async function commitRelease(d: BootDeps & { keys: KeyService }): Promise<{ version: number; from: string; to: string; proof: string }> {
  const record = parseJson(ProvisioningRecord, await d.data.read(DATA.record), 'TPM provisioning record', 'KEYS_NOT_PROVISIONED');
  const state = await bootState(d.run);
  const proof = await d.keys.selfTest();
  const index = record.nvCounter.index;
  const from = await d.tpm.nvReadCounter(index);
  const target = BigInt(state.version);
  if (from > target) throw new EvccError('BOOT_ROLLBACK', `counter ${from} is already above the running version ${state.version}`, { counter: String(from) });
  let now = from;
  while (now < target) {
    await d.keys.incrementAntiRollbackCounter(index); // owner policy once the hierarchies are set up (hierarchy.ts)
    now = await d.tpm.nvReadCounter(index);
  }
  d.log.info({ version: state.version, from: String(from), to: String(now), proof: proof.key }, `release v${state.version} committed: anti-rollback counter ${from} -> ${now}`);
  return { version: state.version, from: String(from), to: String(now), proof: proof.key };
}

import { readFile } from 'node:fs/promises';
import type { Logger } from '../core/logger.ts';
import { quote } from '../firmware/keys/attestation-key.ts';
import { DEFAULT_EVENT_LOG } from '../firmware/keys/event-log.ts';
import { DATA, parseJson, ProvisioningRecord } from '../firmware/keys/layout.ts';
import type { TpmSettings } from '../firmware/keys/settings.ts';
import { AttestationResponder, type ReleaseClaim } from '../firmware/ota/attestation.ts';
import type { OtaLink } from '../firmware/ota/link.ts';
import type { SecurityEvents } from '../firmware/log/security-log.ts';
import type { KeyReadiness } from '../firmware/vehicle/policy.ts';
import type { FileStore } from '../hal/store/types.ts';
import type { Tpm } from '../hal/tpm/types.ts';

/**
 * Composition of the vehicle's attestation responder on the OEM link (`evcc run`, `evcc charge`): quotes with the
 * attestation key through the trust's TPM driver when it kept one (full mode: one driver, so a failure recovery
 * never flushes another driver's armed session), else through its own (degraded); the initramfs event log; the
 * release claim from this boot's record, else from the installed bundle's manifest.
 */
export async function startVehicleAttestation(o: {
  link: OtaLink; vehicleId: string; data: FileStore; readiness: KeyReadiness; bootVersion: () => Promise<number>; tpm?: Tpm;
  openTpm: () => Promise<Tpm & { close(): Promise<void> }>; tpmSettings: TpmSettings; log: Logger; eventLogPath?: string; events?: SecurityEvents;
}): Promise<(() => Promise<void>) | undefined> {
  const raw = await o.data.read(DATA.record);
  const record = raw ? parseJson(ProvisioningRecord, raw, 'TPM provisioning record', 'KEYS_NOT_PROVISIONED') : undefined;
  if (!record?.attestationKey) {
    o.log.warn({ cp: 'OTA-ATTEST-NO-KEY' }, 'no attestation key provisioned (run evcc tpm provision): attestation challenges stay unanswered');
    return undefined;
  }
  const own = o.tpm ? undefined : await o.openTpm();
  const tpm = o.tpm ?? own!;
  const claim = async (): Promise<ReleaseClaim> => {
    const booted = await o.bootVersion().catch(() => undefined);
    if (booted !== undefined) return { version: booted, mode: 'approved' };
    const { releaseVersion, verifyBundle } = await import('../hal/rauc/bundle.ts');
    const version = await verifyBundle(o.tpmSettings.bundlePath, o.tpmSettings.keyring, { checkTime: o.tpmSettings.bundleCheckTime }).then(releaseVersion, () => null);
    return { version, mode: 'degraded', ...(o.readiness.ready ? {} : { reason: o.readiness.code.slice(0, 64) }) };
  };
  const responder = new AttestationResponder({
    client: o.link.client, vehicleId: o.vehicleId, log: o.log, ...(o.events ? { events: o.events } : {}),
    ports: {
      quote: (nonce, pcrs) => quote({ tpm, data: o.data }, record, nonce, pcrs),
      eventLog: () => readFile(o.eventLogPath ?? DEFAULT_EVENT_LOG, 'utf8').catch(() => ''),
      release: claim,
    },
  });
  responder.start();
  return async () => {
    responder.stop();
    await own?.close();
  };
}

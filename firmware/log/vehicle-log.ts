import type { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { FileStore } from '../../hal/store/types.ts';
import { DATA, ProvisioningRecord } from '../keys/layout.ts';
import { SecurityLog, tpmCheckpointSigner, type SecurityDetail, type SecurityEvents } from './security-log.ts';
import { SessionHistory, type SessionHistoryRecord } from './session-history.ts';

/**
 * The runtime's composition of the security log and the session history (the call sites: `evcc boot`, the
 * runtime's start in bin/commands/charge.ts openVehicleStack, the session end, OTA steps, attestation answers).
 *
 *   const securityLog = await openVehicleSecurityLog({ data, keys, now, log });   // checkpoint at start: signs what
 *                                                                                  // evcc boot appended this boot
 *   await recordBootCheck(securityLog, reportOrError);                            // evcc boot
 *   const history = openVehicleHistory({ data, trust, random, log }, vehicleId);   // full trust: historyKey
 *   await history.append(historyRecordOf(chargeReport, { startedAt, endedAt, emaid }));
 */

/** What the log needs of the key service (structural: KeyService fits). */
export interface LogKeys {
  signWithLogKey(digest32: Uint8Array): Promise<Uint8Array>;
  provisioning: { logKey?: { publicKeyPem: string } | undefined; storageKey: { name: string } };
}

/**
 * Opens the data dir's security log with the TPM log key as signer (when the vehicle has one). The genesis entry
 * names the vehicle by `vehicleId`, else by its storage key's TPM name (unique per TPM).
 */
export async function openVehicleSecurityLog(d: { data: FileStore; keys?: LogKeys; now: () => number; log: Logger }, o: { vehicleId?: string; checkpointEvery?: number } = {}): Promise<SecurityLog> {
  const signer = d.keys ? tpmCheckpointSigner(d.keys) : undefined;
  // Without the key service yet (the runtime opens the log first): the provisioning record names key and vehicle.
  const provisioning = d.keys?.provisioning ?? (await readProvisioning(d.data));
  const publicKeyPem = provisioning?.logKey?.publicKeyPem;
  const vehicleId = o.vehicleId ?? (provisioning ? `tpm:${provisioning.storageKey.name}` : 'unprovisioned');
  return SecurityLog.open({ store: d.data, now: d.now, log: d.log, ...(signer ? { signer } : {}) },
    { vehicleId, ...(publicKeyPem ? { publicKeyPem } : {}), ...(o.checkpointEvery ? { checkpointEvery: o.checkpointEvery } : {}) });
}

/**
 * The log as `evcc boot` opens it: no key service (the boot check runs before the state is known), so it appends
 * without checkpoints — the runtime's start checkpoint signs them (in an approved state). Undefined on a vehicle
 * not provisioned yet (there is no vehicle to log for).
 */
export async function openBootSecurityLog(d: { data: FileStore; now: () => number; log: Logger }): Promise<SecurityLog | undefined> {
  if (!(await readProvisioning(d.data))) return undefined;
  return openVehicleSecurityLog(d, { checkpointEvery: Number.MAX_SAFE_INTEGER });
}

async function readProvisioning(data: FileStore): Promise<ProvisioningRecord | undefined> {
  const raw = await data.read(DATA.record);
  if (!raw) return undefined;
  try {
    return ProvisioningRecord.parse(JSON.parse(Buffer.from(raw).toString('utf8')));
  } catch {
    return undefined; // the boot check and the key service report a broken record (KEYS_NOT_PROVISIONED / STORE_CORRUPT)
  }
}

/** The boot check's result as a `boot.check` entry: the measured release and PCR 14, or the refusal code. */
export async function recordBootCheck(events: SecurityEvents, result: { version: number; bundleSha256: string; rootfsSha256: string; pcrValue: string; counter: string } | { error: unknown }): Promise<void> {
  let detail: SecurityDetail;
  if ('error' in result) {
    const e = result.error as EvccError;
    detail = { ok: false, code: e.code ?? 'INTERNAL', message: e.message ?? String(e), ...(typeof e.details?.rc === 'string' ? { rc: e.details.rc } : {}) };
  } else {
    detail = { ok: true, version: result.version, pcr14: result.pcrValue, bundleSha256: result.bundleSha256, rootfsSha256: result.rootfsSha256, counter: result.counter };
  }
  await events.record('boot.check', detail);
}

/**
 * The runtime's session history: readable and writable with the full trust's history key; without it (degraded,
 * bench trust) every call is HISTORY_UNAVAILABLE with the reason, and the security log records that once.
 */
export function openVehicleHistory(d: { data: FileStore; historyKey: Uint8Array | undefined; unavailableReason?: string; random: (n: number) => Uint8Array; log: Logger; events?: SecurityEvents }, vehicleId: string): SessionHistory {
  const history = new SessionHistory({ store: d.data, key: d.historyKey, random: d.random, log: d.log, ...(d.unavailableReason ? { unavailableReason: d.unavailableReason } : {}) }, { vehicleId });
  if (!history.readable) {
    d.log.warn({ reason: d.unavailableReason, cp: 'HISTORY-UNAVAILABLE' }, `session history unavailable in this state (${d.unavailableReason ?? 'no key'}): sessions are not recorded`);
    void d.events?.record('history.unreadable', { reason: d.unavailableReason ?? 'no key' });
  }
  return history;
}

/** One history record from a session report (ChargeReport-shaped) and what the report does not carry. */
export function historyRecordOf(r: { ok: boolean; endReason: { code: string }; protocol?: string; payment?: string; energyWh?: number; soc?: { start: number; end: number }; secc?: { address?: string } },
  o: { startedAt: string; endedAt: string; emaid?: string; evseId?: string }): SessionHistoryRecord {
  return {
    startedAt: o.startedAt, endedAt: o.endedAt, ok: r.ok, endCode: r.endReason.code,
    ...(r.protocol ? { protocol: r.protocol } : {}), ...(r.payment ? { payment: r.payment } : {}),
    ...(o.emaid ? { emaid: o.emaid } : {}), ...(o.evseId ? { evseId: o.evseId } : {}),
    ...(r.secc?.address ? { charger: r.secc.address } : {}),
    ...(r.energyWh !== undefined ? { energyWh: r.energyWh } : {}), ...(r.soc ? { soc: r.soc } : {}),
  };
}

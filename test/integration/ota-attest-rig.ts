import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { forSubsystem, silentLogger, type Logger } from '../../core/logger.ts';
import { AttestationRegistry, AttestationService, type VehicleAttestation } from '../../deploy/oem-backend/attestation.ts';
import { quote } from '../../firmware/keys/attestation-key.ts';
import { DATA, parseJson, ProvisioningRecord, RUN, BootState } from '../../firmware/keys/layout.ts';
import { reencryptLinkKey } from '../../firmware/keys/link-key.ts';
import { backendExport } from '../../firmware/keys/provision.ts';
import type { SignedPolicy } from '../../firmware/keys/signed-policy.ts';
import { createSignedPolicy } from '../../deploy/oem/release.ts';
import { AttestationResponder, type AttestationPorts, type ReleaseClaim } from '../../firmware/ota/attestation.ts';
import { OtaLink } from '../../firmware/ota/link.ts';
import { openTrust, type TrustPart } from '../../firmware/vehicle/trust.ts';
import { SystemClock } from '../../hal/clock/system.ts';
import { MqttJsConnector } from '../../hal/mqtt/mqtt-js.ts';
import type { MqttClient, MqttMessage, MqttTlsIdentity } from '../../hal/mqtt/types.ts';
import { releaseVersion, verifyBundle } from '../../hal/rauc/bundle.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { OEM_BACKEND_USER, type MosquittoBroker } from '../support/mosquitto.ts';
import { until } from '../support/until.ts';
import type { TpmLab } from './tpm-lab.ts';

/**
 * The attestation set-up of ota-attest / ota-degraded-link: the OEM backend's attestation verifier (the real
 * service, its registry in a temp dir: the vehicle's attestation key from its provisioning export, the OEM's signed
 * releases) on a real mosquitto (mTLS, per-vehicle ACL), and the vehicle as the runtime composes it — trust opened
 * through the TPM (openTrust), the OEM link key encrypted under the passphrase the trust gives, the OtaLink over
 * mosquitto and the attestation responder quoting with the lab's TPM.
 */
export async function backendFor(broker: MosquittoBroker, o: { ttlMs?: number; log?: Logger } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'evcc-attest-'));
  const registry = await AttestationRegistry.open(dir);
  const service = new AttestationService({
    connector: new MqttJsConnector(), url: broker.url, protocolVersion: 5, tls: await broker.identity(OEM_BACKEND_USER), clientId: 'oem-attest-test',
    registry, clock: new SystemClock(), log: o.log ?? silentLogger(), challengeTtlMs: o.ttlMs ?? 20_000, periodMs: 0,
  });
  const records: VehicleAttestation[] = [];
  service.onRecord = (s) => records.push(structuredClone(s));
  await service.start();
  return {
    dir, registry, service, records,
    /** The next record for `vehicleId` after `from` records. */
    async next(vehicleId: string, from: number, timeoutMs = 30_000): Promise<VehicleAttestation> {
      await until(() => records.slice(from).some((r) => r.vehicleId === vehicleId), timeoutMs, `attestation record for ${vehicleId}`);
      return records.slice(from).find((r) => r.vehicleId === vehicleId)!;
    },
    async close() {
      await service.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A raw MQTT client with `commonName`'s certificate that records what it receives on `filters`. */
export async function spyClient(broker: MosquittoBroker, commonName: string, filters: string[]): Promise<{ client: MqttClient; messages: MqttMessage[] }> {
  const client = new MqttJsConnector().connect({ url: broker.url, clientId: `spy-${commonName}-${Math.random().toString(36).slice(2, 8)}`, protocolVersion: 5, tls: await broker.identity(commonName), cleanSession: true, reconnectPeriodMs: 500 });
  const messages: MqttMessage[] = [];
  client.onMessage((m) => messages.push(m));
  await until(() => client.status === 'connected', 15_000, 'spy connected');
  if (filters.length) await client.subscribe(filters, 1);
  return { client, messages };
}

/** What the vehicle claims to have booted: the installed bundle's version; approved if `evcc boot` passed this boot. */
export async function releaseClaim(lab: TpmLab, bundle: string, refusal?: string): Promise<ReleaseClaim> {
  const version = releaseVersion(await verifyBundle(bundle, lab.bundleCert));
  const booted = await FsStore.open(lab.runDir).then((r) => r.read(RUN.boot));
  if (booted) parseJson(BootState, booted, 'boot state', 'KEYS_NOT_BOOTED');
  return booted ? { version, mode: 'approved' } : { version, mode: 'degraded', reason: refusal ?? 'KEYS_NOT_BOOTED' };
}

export interface AttestedVehicle {
  trust: TrustPart;
  link: OtaLink;
  responder: AttestationResponder;
  close(): Promise<void>;
}

/**
 * The vehicle's runtime start: trust through the TPM (degraded when measured boot failed), the link with the
 * encrypted key `encryptedKeyPem` (made once by `linkKeyFor`) and the passphrase the trust gives, the responder.
 */
export async function startVehicle(lab: TpmLab, broker: MosquittoBroker, o: { vehicleId: string; encryptedKeyPem: string; claim: () => Promise<ReleaseClaim>; log?: Logger }): Promise<AttestedVehicle> {
  const log = o.log ?? silentLogger();
  const data = await FsStore.open(lab.dataDir);
  const run = await FsStore.open(lab.runDir);
  const trust = await openTrust({
    data, run, log: (sub) => forSubsystem(log, sub), openTpm: () => lab.driver(),
    bootState: async () => parseJson(BootState, await run.read(RUN.boot), 'boot state', 'KEYS_NOT_BOOTED'),
  }, { reclaim: false, armContractKey: false });
  if (!trust.linkKeyPassphrase) throw new Error(`no link passphrase (${trust.readiness.ready ? 'ready' : trust.readiness.code})`);
  const id = await broker.identity(o.vehicleId);
  const tls: MqttTlsIdentity = { ca: id.ca, cert: id.cert, key: o.encryptedKeyPem, passphrase: trust.linkKeyPassphrase };
  const mode = trust.readiness.ready ? { mode: 'pnc' } : { mode: 'eim-only', degraded: { code: trust.readiness.code } };
  const link = new OtaLink({ connector: new MqttJsConnector(), url: broker.url, vehicleId: o.vehicleId, protocolVersion: 5, tls, clock: new SystemClock(), log, reconnectPeriodMs: 500, stateExtras: mode });
  const tpm = await lab.driver();
  const record = parseJson(ProvisioningRecord, await data.read(DATA.record), 'TPM provisioning record', 'KEYS_NOT_PROVISIONED');
  const ports: AttestationPorts = {
    quote: (nonce, pcrs) => quote({ tpm, data }, record, nonce, pcrs),
    eventLog: () => readFile(lab.eventLog, 'utf8').catch(() => ''),
    release: o.claim,
  };
  const responder = new AttestationResponder({ client: link.client, vehicleId: o.vehicleId, ports, log });
  responder.start();
  return {
    trust, link, responder,
    async close() {
      responder.stop();
      await link.close();
      await trust.close();
    },
  };
}

/** The vehicle's link key as `evcc pki link-key import` leaves it: encrypted under the passphrase `trust` gives. */
export async function linkKeyFor(broker: MosquittoBroker, vehicleId: string, passphrase: string): Promise<string> {
  const id = await broker.identity(vehicleId);
  return reencryptLinkKey(String(id.key), { passphrase });
}

/**
 * Production at the OEM: the vehicle's attestation key from its provisioning export, the OEM policy key, and the
 * signed state policy of release v1 (the lab's `bootedVehicle` bundle). Returns that policy.
 */
export async function registerAtProduction(registry: AttestationRegistry, lab: TpmLab, vehicleId: string): Promise<SignedPolicy> {
  const record = parseJson(ProvisioningRecord, await (await FsStore.open(lab.dataDir)).read(DATA.record), 'TPM provisioning record', 'KEYS_NOT_PROVISIONED');
  await registry.registerVehicle(vehicleId, backendExport(record)['attestation.tpm2b_pub'] as Uint8Array);
  await registry.setOemPolicyKey(await readFile(lab.oemPolicyPub, 'utf8'));
  const policy = await createSignedPolicy({ bundlePath: join(lab.oemDir, 'v1.raucb'), keyring: lab.bundleCert, policyKeyPem: await readFile(lab.oemPolicyKey, 'utf8') });
  await registry.addRelease(policy);
  return policy;
}

/** The link key `evcc pki link-key import` would leave in this boot: encrypted under the passphrase the vehicle's trust gives. */
export async function linkKeyFromTrust(lab: TpmLab, broker: MosquittoBroker, vehicleId: string): Promise<string> {
  const probe = await openTrust({
    data: await FsStore.open(lab.dataDir), run: await FsStore.open(lab.runDir), log: () => silentLogger(), openTpm: () => lab.driver(),
    bootState: async () => ({ version: 1 }),
  }, { reclaim: false, armContractKey: false });
  await probe.close();
  if (!probe.linkKeyPassphrase) throw new Error('no link passphrase');
  return linkKeyFor(broker, vehicleId, probe.linkKeyPassphrase);
}

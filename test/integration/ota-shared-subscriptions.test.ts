import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { OemBackend } from '../../deploy/oem-backend/service.ts';
import { BACKEND_FILTERS, BACKEND_SHARE_GROUP, OTA_ROOT_FETCH_MAX_MS } from '../../firmware/ota/constants.ts';
import { OtaLink } from '../../firmware/ota/link.ts';
import { rootStoreOf } from '../../firmware/ota/pki-adapter.ts';
import { OemRootFetcher } from '../../firmware/ota/root-fetch.ts';
import { syncRootList } from '../../firmware/ota/root-sync.ts';
import { sha256Hex } from '../../firmware/ota/signing.ts';
import { parseCert } from '../../firmware/pki/cert.ts';
import { chainDer } from '../../firmware/pki/generate.ts';
import { SystemClock } from '../../hal/clock/system.ts';
import { MqttJsConnector } from '../../hal/mqtt/mqtt-js.ts';
import { sharedFilter, type MqttClient } from '../../hal/mqtt/types.ts';
import { MemoryStore } from '../../hal/store/memory-store.ts';
import { silentLogger } from '../../core/logger.ts';
import { dynsecPluginPath, OEM_BACKEND_USER, startMosquitto, type MosquittoBroker } from '../support/mosquitto.ts';
import { backendFlags, startBackendInstance, type BackendInstance } from '../support/oem-backend-cluster.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { until } from '../support/until.ts';
import { otaFixture, recordingLogger, vehicleStore, type OtaFixture } from './ota-fixtures.ts';

/**
 * Issue #10 Must show 8: the OEM backend scaled out over MQTT 5 shared subscriptions. Two `evcc oem-backend`
 * processes in one share group behind a real mosquitto (mTLS + per-vehicle ACL); VEHICLES simulated vehicles, each
 * its own link identity, send root-CA and root-list requests in a loop (paced under the backend's per-vehicle rate
 * limit) and verify every answer in full (OEM signature, nonce, root profile). Under that load one instance
 * freezes (SIGSTOP: the broker keeps handing it its share, which piles up unanswered) and is then SIGKILLed: its
 * clean session ends with the connection and those requests die with it at the broker. Every request must still be
 * answered within its budget — by the survivor, through the vehicle's idempotent re-publish (rpc.ts).
 */
const VEHICLES = 60;
/** One request per vehicle at most every PACE_MS: 4/s, under the default 5/s per-vehicle limit. */
const PACE_MS = 250;
const FROZEN_MS = 400;
const AFTER_KILL_MS = 5_000;

const connector = new MqttJsConnector();
const clock = new SystemClock();
let fx: OtaFixture;
let broker: MosquittoBroker;
let dir: string;
const instances: BackendInstance[] = [];
const links: OtaLink[] = [];
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What an SECC on PKI-B presents: the vehicle knows only root A, so it asks the backend for B's root. */
function presentedB() {
  const chain = chainDer({ name: 'secc-b', leaf: fx.pki.b.seccLeaf, intermediates: [fx.pki.b.cpoSub2, fx.pki.b.cpoSub1], root: fx.pki.b.root, purpose: 'secc-tls' });
  const top = parseCert(chain[chain.length - 1]!);
  return { issuer: top.issuer, aki: top.authorityKeyId!, chain };
}

describeWith([tool('mosquitto')])('OEM backend scale-out: MQTT 5 shared subscriptions over mosquitto', () => {
  beforeAll(async () => {
    fx = await otaFixture();
    broker = await startMosquitto();
    dir = await mkdtemp(join(tmpdir(), 'evcc-ota-share-'));
  });
  afterAll(async () => {
    for (const l of links) await l.close().catch(() => undefined);
    for (const i of instances) if (i.proc.exitCode === null && i.proc.signalCode === null) i.proc.kill('SIGKILL');
    await broker?.stop();
    await fx?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it(`2 instances share ${VEHICLES} vehicles' requests; one frozen then SIGKILLed under load → every request answered and verified`, async () => {
    const flags = await backendFlags(broker, dir, fx.signerKeyPem, fx.poolDir);
    const a = startBackendInstance('a', flags);
    const b = startBackendInstance('b', flags);
    instances.push(a, b);
    await Promise.all([a, b].map((i) => Promise.race([i.ready, wait(30_000).then(() => { throw new Error(`${i.name} not ready: ${i.lines.slice(-3).join(' | ')}`); })])));

    const presented = presentedB();
    const vehicleLog = recordingLogger('debug');
    const fleet = await Promise.all(Array.from({ length: VEHICLES }, async (_, n) => {
      const vid = `veh-share-${String(n).padStart(3, '0')}`;
      const link = new OtaLink({ connector, url: broker.url, vehicleId: vid, protocolVersion: 5, tls: await broker.identity(vid), clock, log: vehicleLog.sub('OTA'), reconnectPeriodMs: 300 });
      links.push(link);
      const store = rootStoreOf(await vehicleStore(new MemoryStore(), [fx.pki.a.root.der]));
      const fetcher = new OemRootFetcher({ rpc: link.rootCaRpc, vehicleId: vid, trust: fx.trust, clock, log: silentLogger() });
      return { vid, link, store, fetcher };
    }));
    await until(() => fleet.every((v) => v.link.status === 'connected'), 30_000, `${VEHICLES} vehicles connected`);

    let stop = false;
    let killedAt = Number.POSITIVE_INFINITY;
    const failures: string[] = [];
    const rootCa: { requestId: string; start: number; end: number }[] = [];
    let rootLists = 0;
    const loops = fleet.map(async (v, n) => {
      for (let k = n; !stop; k++) {
        const start = Date.now();
        try {
          if (k % 2 === 0) {
            const root = await v.fetcher.fetchRoot(presented, { budgetMs: OTA_ROOT_FETCH_MAX_MS });
            if (root.sha256 !== sha256Hex(fx.pki.b.root.der)) failures.push(`${v.vid}: root-CA answer names another root ${root.subject}`);
            rootCa.push({ requestId: root.requestId, start, end: Date.now() });
          } else {
            const res = await syncRootList({ rpc: v.link.rootListRpc, vehicleId: v.vid, trust: fx.trust, store: v.store, clock, log: silentLogger(), budgetMs: OTA_ROOT_FETCH_MAX_MS });
            if (res.rejected.length > 0 || res.installed.length + res.alreadyPresent !== 2) failures.push(`${v.vid}: root list ${JSON.stringify(res)}`);
            rootLists++;
          }
        } catch (err) {
          const e = err as { code?: string; message?: string };
          failures.push(`${v.vid} (${start >= killedAt ? 'after' : 'before'} the kill): ${e.code ?? 'ERROR'} ${e.message ?? String(err)}`);
        }
        await wait(Math.max(0, start + PACE_MS - Date.now()));
      }
    });

    // Both instances serve before anything happens: the broker shares the requests between them.
    await until(() => a.answered.length >= 40 && b.answered.length >= 40, 30_000, 'both instances answering');
    const servedBeforeKill = { a: a.answered.length, b: b.answered.length };
    a.proc.kill('SIGSTOP');
    await wait(FROZEN_MS);
    a.proc.kill('SIGKILL');
    killedAt = Date.now();
    expect(await a.exit).toBeNull();
    const bAtKill = b.answered.length;
    await wait(AFTER_KILL_MS);
    stop = true;
    await Promise.all(loops);

    const summary = `root-CA ${rootCa.length}, root lists ${rootLists}, served before the kill a=${servedBeforeKill.a} b=${servedBeforeKill.b}, b after the kill ${b.answered.length - bAtKill}`;
    expect(failures, summary).toEqual([]);
    expect(servedBeforeKill.a).toBeGreaterThanOrEqual(40);
    expect(servedBeforeKill.b).toBeGreaterThanOrEqual(40);
    // Every root-CA request finished after the kill was answered by the survivor.
    const answeredByB = new Set(b.answered);
    const late = rootCa.filter((r) => r.end > killedAt + 100);
    expect(late.length).toBeGreaterThan(VEHICLES / 2);
    expect(late.filter((r) => !answeredByB.has(r.requestId)).map((r) => r.requestId)).toEqual([]);
    // The frozen instance's share was lost at the broker and recovered by the vehicles' re-publish.
    const republished = vehicleLog.lines.filter((l) => l.includes('no answer yet: publishing the request again')).length;
    expect(republished, summary).toBeGreaterThan(0);
    const stranded = rootCa.filter((r) => r.start < killedAt - 50 && r.end > killedAt);
    expect(stranded.length, summary).toBeGreaterThan(0);
    expect(b.lines.filter((l) => /\[(ERROR|FATAL)\]/.test(l))).toEqual([]);
  }, 120_000);

  it('acl_file (mosquitto 2.0): a vehicle\'s subscription to the backend\'s share group is granted — the hazard README names', async () => {
    const thief = connector.connect({ url: broker.url, clientId: 'veh-share-thief', protocolVersion: 5, tls: await broker.identity('veh-share-thief'), reconnectPeriodMs: 0 });
    try {
      await until(() => thief.status === 'connected', 10_000, 'thief connected');
      const granted = await thief.subscribe([sharedFilter(BACKEND_SHARE_GROUP, BACKEND_FILTERS.rootCaRequest)], 1);
      // If this fails, mosquitto's acl_file now authorises subscriptions: update the README's broker section.
      expect(granted).toEqual([1]);
    } finally {
      await thief.close();
    }
  });
});

const dynsecPlugin = { name: 'mosquitto dynamic-security plugin', present: () => dynsecPluginPath() !== undefined };

describeWith([tool('mosquitto'), dynsecPlugin])('OEM backend share group behind mosquitto\'s dynamic-security plugin', () => {
  let dyn: MosquittoBroker;
  let backend: OemBackend;
  const opened: { close(): Promise<void> }[] = [];
  beforeAll(async () => {
    fx ??= await otaFixture();
    dyn = await startMosquitto({ dynsecVehicles: ['veh-dyn-1', 'veh-dyn-thief'] });
    backend = new OemBackend({ connector, url: dyn.url, protocolVersion: 5, tls: await dyn.identity(OEM_BACKEND_USER), pool: fx.pool, signer: fx.signer, clock, log: silentLogger() });
    await backend.start();
  });
  afterAll(async () => {
    for (const c of opened) await c.close().catch(() => undefined);
    await backend?.stop();
    await dyn?.stop();
  });

  it('a provisioned vehicle cannot join the share group or read others\' requests; every request reaches the backend', async () => {
    const thief: MqttClient = connector.connect({ url: dyn.url, clientId: 'veh-dyn-thief', protocolVersion: 5, tls: await dyn.identity('veh-dyn-thief'), reconnectPeriodMs: 0 });
    opened.push(thief);
    await until(() => thief.status === 'connected', 10_000, 'thief connected');
    const granted = await thief.subscribe([
      sharedFilter(BACKEND_SHARE_GROUP, BACKEND_FILTERS.rootCaRequest), sharedFilter(BACKEND_SHARE_GROUP, BACKEND_FILTERS.rootListRequest),
      BACKEND_FILTERS.rootCaRequest, 'evcc/v1/veh-dyn-1/#',
    ], 1);
    expect(granted.every((g) => g >= 0x80)).toBe(true);
    expect(await thief.subscribe(['evcc/v1/veh-dyn-thief/pki/rootca/resp'], 1)).toEqual([1]);

    // Without re-publishing: each request must reach the backend the first time.
    const link = new OtaLink({ connector, url: dyn.url, vehicleId: 'veh-dyn-1', protocolVersion: 5, tls: await dyn.identity('veh-dyn-1'), clock, log: silentLogger(), republishMs: 0 });
    opened.push(link);
    const fetcher = new OemRootFetcher({ rpc: link.rootCaRpc, vehicleId: 'veh-dyn-1', trust: fx.trust, clock, log: silentLogger() });
    for (let i = 0; i < 10; i++) {
      const root = await fetcher.fetchRoot(presentedB(), { budgetMs: 3_000 });
      expect(root.sha256).toBe(sha256Hex(fx.pki.b.root.der));
    }
  });

  it('a vehicle that was never provisioned on the broker gets nothing through', async () => {
    const link = new OtaLink({ connector, url: dyn.url, vehicleId: 'veh-dyn-unknown', protocolVersion: 5, tls: await dyn.identity('veh-dyn-unknown'), clock, log: silentLogger() });
    opened.push(link);
    const fetcher = new OemRootFetcher({ rpc: link.rootCaRpc, vehicleId: 'veh-dyn-unknown', trust: fx.trust, clock, log: silentLogger() });
    await expect(fetcher.fetchRoot({ issuer: 'CN=x', chain: [] }, { budgetMs: 2_000 })).rejects.toMatchObject({ code: 'OTA_BROKER_REFUSED' });
  });
});

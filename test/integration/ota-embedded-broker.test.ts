import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKEND_IDENTITY, startEmbeddedBroker, type EmbeddedBroker } from '../../deploy/oem-backend/embedded-broker.ts';
import { createLinkCa, issueLinkCert } from '../../deploy/oem-backend/link-pki.ts';
import { OemBackend } from '../../deploy/oem-backend/service.ts';
import { silentLogger } from '../../core/logger.ts';
import { vehicleTopics } from '../../firmware/ota/constants.ts';
import { OtaLink } from '../../firmware/ota/link.ts';
import { validateSeccPath } from '../../firmware/ota/pki-adapter.ts';
import { OemRootFetcher } from '../../firmware/ota/root-fetch.ts';
import { sha256Hex } from '../../firmware/ota/signing.ts';
import { parseCert } from '../../firmware/pki/cert.ts';
import { chainDer } from '../../firmware/pki/generate.ts';
import { SystemClock } from '../../hal/clock/system.ts';
import { MqttJsConnector } from '../../hal/mqtt/mqtt-js.ts';
import type { MqttClient, MqttTlsIdentity } from '../../hal/mqtt/types.ts';
import { otaFixture, type OtaFixture } from './ota-fixtures.ts';
import { until } from '../support/until.ts';

/**
 * The embedded bench session's broker (aedes, in-process, MQTT 3.1.1 only): the same vehicle client and OEM backend
 * work over it, plain on loopback and with mutual TLS, and its ACL confines vehicles like the mosquitto config does.
 */
const clock = new SystemClock();
const connector = new MqttJsConnector();
let fx: OtaFixture;
const cleanups: (() => Promise<unknown>)[] = [];

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
beforeAll(async () => {
  fx = await otaFixture();
});
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await fx.cleanup();
});

function presentedB() {
  const chain = chainDer({ name: 'b', leaf: fx.pki.b.seccLeaf, intermediates: [fx.pki.b.cpoSub2, fx.pki.b.cpoSub1], root: fx.pki.b.root, purpose: 'secc-tls' });
  const top = parseCert(chain[chain.length - 1]!);
  return { issuer: top.issuer, aki: top.authorityKeyId!, chain };
}

async function setup(tlsIds?: (cn: string) => Promise<MqttTlsIdentity>, brokerTls?: { ca: string; cert: string; key: string }) {
  const broker = await startEmbeddedBroker({ ...(brokerTls ? { tls: brokerTls } : {}) });
  cleanups.push(() => broker.close());
  const backend = new OemBackend({
    connector, url: broker.url, protocolVersion: 4, clientId: 'oem-backend-embedded', pool: fx.pool, signer: fx.signer, clock, log: silentLogger(),
    ...(tlsIds ? { tls: await tlsIds(BACKEND_IDENTITY) } : {}),
  });
  await backend.start();
  cleanups.push(() => backend.stop());
  const vehicle = async (vid: string) => {
    const link = new OtaLink({ connector, url: broker.url, vehicleId: vid, protocolVersion: 4, clock, log: silentLogger(), ...(tlsIds ? { tls: await tlsIds(vid) } : {}) });
    cleanups.push(() => link.close());
    return { link, fetcher: new OemRootFetcher({ rpc: link.rootCaRpc, vehicleId: vid, trust: fx.trust, clock, log: silentLogger(), validatePath: validateSeccPath }) };
  };
  return { broker, backend, vehicle };
}

describe('embedded aedes broker (MQTT 3.1.1) for the bench session', () => {
  it('plain loopback: the vehicle fetches PKI-B\'s root from the backend', async () => {
    const { vehicle, broker } = await setup();
    expect(broker.url).toMatch(/^mqtt:\/\/127\.0\.0\.1:\d+$/);
    const v = await vehicle('veh-emb-1');
    const root = await v.fetcher.fetchRoot(presentedB(), { budgetMs: 5000 });
    expect(root.sha256).toBe(sha256Hex(fx.pki.b.root.der));
  });

  it('mutual TLS: identity from the client certificate; fetch works, another vehicle\'s topics are refused', async () => {
    const ca = await createLinkCa('embedded test CA');
    const server = await issueLinkCert(ca, { commonName: 'broker', server: { ips: ['127.0.0.1'] } });
    const ids = async (cn: string) => {
      const c = await issueLinkCert(ca, { commonName: cn });
      return { ca: ca.certPem, cert: c.certPem, key: c.keyPem };
    };
    const { vehicle, broker } = await setup(ids, { ca: ca.certPem, cert: server.certPem, key: server.keyPem });
    expect(broker.url).toMatch(/^mqtts:/);
    const v = await vehicle('veh-emb-2');
    expect((await v.fetcher.fetchRoot(presentedB(), { budgetMs: 5000 })).sha256).toBe(sha256Hex(fx.pki.b.root.der));

    const spy: MqttClient = connector.connect({ url: broker.url, clientId: 'spy', protocolVersion: 4, tls: await ids('veh-emb-3'), reconnectPeriodMs: 0 });
    cleanups.push(() => spy.close());
    await until(() => spy.status === 'connected');
    const granted = await spy.subscribe(['evcc/v1/veh-emb-2/#', '#', 'evcc/v1/veh-emb-3/#'], 1);
    expect(granted.map((g) => g >= 0x80)).toEqual([true, true, false]);
    // Publishing into another vehicle's topic is refused (aedes drops the offending client).
    // (Not awaited: the PUBACK never comes, the connection is dropped.)
    void spy.publish(vehicleTopics('veh-emb-2').rootCaResponse, 'forged', { qos: 1 }).catch(() => undefined);
    await until(() => broker.denials.some((d) => d.action === 'publish'));
    expect(broker.denials.map((d) => `${d.identity} ${d.action} ${d.topic}`)).toEqual([
      'veh-emb-3 subscribe evcc/v1/veh-emb-2/#', 'veh-emb-3 subscribe #', `veh-emb-3 publish ${vehicleTopics('veh-emb-2').rootCaResponse}`,
    ]);
  });

  it('refuses MQTT 5 CONNECT (aedes speaks 3.1.1 only): configure protocolVersion 4 for it', async () => {
    const { broker } = await setup();
    const c = connector.connect({ url: broker.url, clientId: 'evcc-veh-emb-5', protocolVersion: 5, reconnectPeriodMs: 0 });
    cleanups.push(() => c.close());
    await wait(500);
    expect(c.status).not.toBe('connected');
  });
});

/**
 * The SECC simulator for the embedded bench (no root, no namespaces): SDP answers travel on a SimIpv6Link, the
 * TLS server is real and listens on loopback, published on the link under the SECC's simulated link-local address.
 *
 * EV side on the same link:
 *   const udp = link.host('sim-ev', 'fe80::e7:1');               // Udp6Transport for discoverSecc
 *   const connector = new NodeTlsConnector(link.resolver());     // TlsConnector for connectTls
 */
import type { Logger } from '../../core/logger.ts';
import { chainPem, type ChainSpec, type TestPki } from '../../firmware/pki/generate.ts';
import type { VehicleCredentials } from '../../firmware/tls/connect.ts';
import type { Clock } from '../../hal/clock/types.ts';
import type { SimIpv6Link } from '../../hal/net/sim-net.ts';
import { loadScenario, type Scenario } from './scenario.ts';
import { startSimSecc, type SimSdpMode, type SimSecc } from './secc.ts';
import type { CertificateServiceHook } from './session.ts';

export type EmbeddedChain = 'pki-a' | 'pki-b' | 'pki-b-cross';

export interface EmbeddedSeccOptions {
  link: SimIpv6Link;
  pki: TestPki;
  /**
   * '1.2' = ISO-2 profile, '1.3' = ISO-20 profile (client authentication on by default), 'none' = plain TCP.
   * Default: the scenario's transport, else '1.2'.
   */
  tls?: '1.2' | '1.3' | 'none';
  /** Which chain the SECC presents: PKI-A, PKI-B, or PKI-B plus the cross-certificate signed by root A (default: the scenario's). */
  chain?: EmbeddedChain;
  /** Declared charger behaviour: a scenario name (`scenarios/*.json`), a path, or a loaded scenario. */
  scenario?: Scenario | string;
  /** Clock of the sessions and the power stage (default: the system clock). */
  clock?: Clock;
  /** Contract chain anchors (DER); default: the test PKI's MO root and V2G roots A and B. */
  contractRoots?: readonly Uint8Array[];
  certificateService?: CertificateServiceHook;
  clientAuth?: boolean;
  sdp?: SimSdpMode;
  /** Simulated link-local address and interface of the SECC. */
  address?: string;
  iface?: string;
  log?: Logger;
}

export function seccChain(pki: TestPki, which: EmbeddedChain): { pem: string; spec: ChainSpec } {
  const v = which === 'pki-a' ? pki.a : pki.b;
  const spec: ChainSpec = { name: which, leaf: v.seccLeaf, intermediates: [v.cpoSub2, v.cpoSub1], root: v.root, purpose: 'secc-tls' };
  return { pem: chainPem(spec) + (which === 'pki-b-cross' ? pki.crossBbyA.pem : ''), spec };
}

/** The vehicle's TLS 1.3 credentials from the test PKI (software key: see VehicleCredentials). */
export function vehicleCredentials(pki: TestPki): VehicleCredentials {
  return { certChainPem: pki.oem.vehicle.pem + pki.oem.sub2.pem + pki.oem.sub1.pem, keyPem: pki.oem.vehicle.keyPem };
}

const TLS_OF_TRANSPORT = { tls12: '1.2', tls13: '1.3', tcp: 'none' } as const;

export async function startEmbeddedSecc(o: EmbeddedSeccOptions): Promise<SimSecc> {
  const address = o.address ?? 'fe80::5ecc:1';
  const iface = o.iface ?? 'sim-secc';
  const scenario = typeof o.scenario === 'string' ? loadScenario(o.scenario) : o.scenario;
  const tls = o.tls ?? (scenario ? TLS_OF_TRANSPORT[scenario.transport] : '1.2');
  const { pem, spec } = seccChain(o.pki, o.chain ?? scenario?.chain ?? 'pki-a');
  const clientAuth = o.clientAuth ?? scenario?.clientAuth ?? tls === '1.3';
  return startSimSecc({
    udp: o.link.host(iface, address), iface, address, link: o.link, listenHost: '127.0.0.1',
    transport: tls === '1.2' ? 'tls12' : tls === '1.3' ? 'tls13' : 'tcp',
    certChainPem: pem, keyPem: spec.leaf.keyPem,
    ...(clientAuth && tls === '1.3' ? { clientCaPem: o.pki.oem.root.pem } : {}),
    ...(o.sdp ? { sdp: o.sdp } : {}),
    ...(scenario ? { scenario } : {}),
    ...(o.clock ? { clock: o.clock } : {}),
    ...(o.certificateService ? { certificateService: o.certificateService } : {}),
    contractRoots: o.contractRoots ?? [o.pki.mo.root.der, o.pki.a.root.der, o.pki.b.root.der],
    ...(o.log ? { log: o.log } : {}),
  });
}

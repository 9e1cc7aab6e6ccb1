/**
 * The one stage binding (ARCHITECTURE.md §2 `firmware/vehicle`): settings + trust + security policy + the HAL parts
 * → the orchestrator's stages. `evcc charge`, `evcc run` and the bench (`evcc bench-session`) all call this; only the
 * HAL parts they construct differ (AF_PACKET or a simulated PLC segment, real sockets or a simulated IPv6 link, the
 * pilot board or a simulated one, a vehicle's BMS port or the battery model, the TPM or swtpm).
 *
 *   plug-in → SLAC (or the link given as up) → SDP (security per policy) → channel plan → TLS (+ Solution C) or TCP
 *   → V2G session (SupportedAppProtocol with the plan's offer → ISO 15118-2 | DIN SPEC 70121) → [pause → resume]
 */
import * as x509 from '@peculiar/x509';
import { EvccError } from '../../core/errors.ts';
import type { Logger, Subsystem } from '../../core/logger.ts';
import type { Clock } from '../../hal/clock/types.ts';
import type { EvPort } from '../../hal/ev/types.ts';
import type { ByteStream, TcpConnector, TlsConnector, Udp6Transport } from '../../hal/net/types.ts';
import type { PilotBoard } from '../../hal/pilot/types.ts';
import type { PlcLink } from '../../hal/plc/types.ts';
import type { ChargingStages, LinkSummary, SeccEndpoint, SessionStageContext, StageContext } from '../evcc.ts';
import { sign as xmldsigSign, type SignedElement, type Signer } from '../exi/xmldsig/index.ts';
import { installContract } from '../keys/contract-install.ts';
import type { KeyService } from '../keys/key-service.ts';
import { contractFromStore } from './contract.ts';
import { rootStoreOf } from '../ota/pki-adapter.ts';
import type { RootFetcher } from '../ota/root-fetch.ts';
import type { OtaSettings } from '../ota/settings.ts';
import { openTlsWithRootFetch } from '../ota/tls-stage.ts';
import type { CertificateStore } from '../pki/store.ts';
import { discoverSecc } from '../sdp/client.ts';
import type { SdpSettings } from '../sdp/settings.ts';
import { runV2gSession, type EffectHandlers, type MessageRecord } from '../session/driver.ts';
import type { SessionResult } from '../session/engine.ts';
import type { EffectTypes } from '../session/exchange.ts';
import { TimerTable } from '../session/timers.ts';
import { toHex } from '../slac/codec.ts';
import { runSlac } from '../slac/driver.ts';
import type { SlacSettings } from '../slac/settings.ts';
import { connectTls, type VehicleCredentials } from '../tls/connect.ts';
import type { TlsSettings } from '../tls/settings.ts';
import { channelPlan, securityPolicy, type ChannelPlan, type KeyReadiness, type SecurityPolicy } from './policy.ts';
import { sessionModules, type ContractCredentials, type VehicleSessionSettings } from './session-modules.ts';

/** ListOfRootCertificateIDs: issuer and serial of every installed V2G root (CertificateInstallation/UpdateReq). */
function rootCertificateIdsOf(store: CertificateStore): { X509IssuerName: string; X509SerialNumber: bigint }[] {
  return store.listRoots().map((r) => {
    const c = new x509.X509Certificate(Uint8Array.from(r.der).buffer);
    return { X509IssuerName: c.issuer, X509SerialNumber: BigInt(`0x${c.serialNumber}`) };
  });
}

/** The hardware (or its simulation) and the firmware services a session runs on. */
export interface VehicleParts {
  clock: Clock;
  /** Calendar time (certificate expiry); the monotonic clock has none. */
  wallClock: () => Date;
  log: (sub: Subsystem) => Logger;
  /** The PLC netdev: SDP and the V2G channel run on its IPv6 link-local scope. */
  iface: string;
  /** Opens the PLC link for SLAC each session; absent: the link is up already (`--link-up`: no SLAC). */
  openPlcLink?: () => Promise<PlcLink>;
  udp: Udp6Transport;
  /** The EV's link-local address on `iface` (SDP source); absent: the kernel picks. */
  localAddress?: () => Promise<string | undefined>;
  tls: TlsConnector;
  /** Plain TCP for chargers without TLS (DIN, ISO-2 EIM); absent: such a charger ends the session, typed. */
  tcp?: TcpConnector;
  pilot?: PilotBoard;
  ev: EvPort;
  /** EVCCID: the MAC of the PLC interface (ISO-2 / DIN SessionSetupReq). */
  evccId: Uint8Array;
  /**
   * The TPM key service when the contract key is usable (PnC): it signs (contract / provisioning key), holds the
   * active contract key, and imports a new one from CertificateInstallation/UpdateRes. Absent: no PnC.
   */
  keys?: KeyService;
  /** Mobility-operator roots a contract chain may end in (besides the V2G roots), DER. */
  moRoots?: readonly Uint8Array[];
  /** Verified V2G roots; absent: TLS cannot authenticate any SECC (an unverified store is never used). */
  store?: CertificateStore;
  /** Solution C: the OEM backend's root-CA fetch; absent: an unknown root ends the setup typed. */
  rootFetcher?: RootFetcher;
  vehicleCredentials?: VehicleCredentials;
  keyLog?: (line: string) => void;
  /** Per-session capture and the dashboard: every V2G message as it crosses. */
  onMessage?: (record: MessageRecord) => void;
}

export interface VehicleSettings {
  slac: SlacSettings;
  sdp: SdpSettings;
  tls: TlsSettings;
  ota: OtaSettings;
  session: VehicleSessionSettings;
}

export interface VehicleChannel {
  kind: 'tls' | 'tcp';
  stream: ByteStream;
  plan: ChannelPlan;
}

export interface BoundStages {
  stages: ChargingStages<VehicleChannel>;
  security: SecurityPolicy;
  /** The plan of the last channel opened (for the report). */
  lastPlan(): ChannelPlan | undefined;
  /** Closes what the plug-in opened (the PLC link stays up from SLAC to the end of the plug-in). */
  release(): Promise<void>;
}

export function bindVehicleStages(parts: VehicleParts, settings: VehicleSettings, readiness: KeyReadiness, o: { waitForPlugIn: (ctx: StageContext) => Promise<void>; waitForResume?: (signal: AbortSignal) => Promise<void> }): BoundStages {
  const { clock, log } = parts;
  const prefs = settings.session.protocols;
  const security = securityPolicy(readiness, prefs);
  let plan: ChannelPlan | undefined;
  let link: PlcLink | undefined;

  const effects: EffectHandlers = {
    contactors: (r) => parts.ev.setContactors(r.closed),
    chargeRequest: async (r) => {
      if (parts.pilot) return parts.pilot.setChargeRequest(r.closed);
      log('PILOT').warn({ closed: r.closed }, `no pilot board: S2 ${r.closed ? 'close' : 'open'} not switched (bench without a board)`);
    },
    ...(parts.keys ? {
      sign: async (r) => {
        const keys = parts.keys!;
        const signer: Signer = r.key === 'contract' ? keys.contractKeySigner() : keys.provisioningKeySigner();
        return xmldsigSign(r.elements as SignedElement[], signer);
      },
      installContract: async (r) => {
        // Verify the CPS signature and both chains, import the key into the TPM (direct or ISO-2 path), then keep
        // the chain next to the key (store id = key id) for PaymentDetailsReq; the old contract stays until then.
        const store = parts.store;
        if (!store) throw new EvccError('EVCC_TRUST_UNAVAILABLE', 'no verified certificate store: a contract cannot be validated');
        const current = await currentContract();
        const out = await installContract({
          operation: r.operation, response: r.response, header: r.header, keys: parts.keys!, now: parts.wallClock(), log: log('KEYS'),
          trust: { v2gRoots: store.anchors(), ...(parts.moRoots ? { moRoots: parts.moRoots } : {}) },
          ...(r.operation === 'update' && current ? { expectedEmaid: current.emaid } : {}),
        });
        await store.putContractChain(out.contractKeyId, out.chainDer);
        // Arm the new key now (policy session ready) so the AuthorizationReq signature that follows PaymentDetails
        // is one TPM command on the critical path, as with a contract installed before the session.
        await parts.keys!.arm().catch((err: unknown) => log('KEYS').warn({ code: (err as { code?: string }).code }, 'new contract key not pre-armed: the Authorization signature will load it'));
        log('KEYS').info({ emaid: out.emaid, key: out.contractKeyId, path: out.path, superseded: out.supersededKeyIds, cp: 'KEYS_CONTRACT_INSTALLED' },
          `contract ${out.emaid} installed: key ${out.contractKeyId} imported into the TPM (${out.path === 'direct' ? 'direct import' : 'ISO 15118-2 path, ECDH in the TPM'})`);
        return { emaid: out.emaid, contractKeyId: out.contractKeyId, certificateChain: out.certificateChain } as EffectTypes['installContract']['result'];
      },
    } : {}),
  };

  /** The contract the vehicle holds now: the active TPM contract key's chain from the store. */
  const currentContract = async (): Promise<ContractCredentials | undefined> => {
    if (!parts.keys || !parts.store) return undefined;
    const id = (await parts.keys.status()).activeContractKey;
    return id ? contractFromStore(parts.store, id) : undefined;
  };

  const stages: ChargingStages<VehicleChannel> = {
    waitForPlugIn: o.waitForPlugIn,

    slac: async (ctx): Promise<LinkSummary> => {
      if (!parts.openPlcLink) {
        log('SLAC').warn({ iface: parts.iface }, `link given as up on ${parts.iface}: no SLAC (bench: PLC link up by other means, or a cable to the charger's controller)`);
        return { evseMac: 'unknown', nid: '', evses: [], given: true };
      }
      link = await parts.openPlcLink();
      const l = link;
      // The modem's join after CM_SET_KEY is part of SLAC (settings.slac.linkUp, within TT_match_join).
      const r = await runSlac({ link: l, clock, log: log('SLAC'), settings: settings.slac, signal: ctx.signal });
      return { evseMac: r.evseMac, nid: toHex(r.nid), evses: r.evses.map((e) => ({ mac: e.mac, averageAttenuationDb: e.averageAttenuationDb ?? Number.NaN })) };
    },

    discoverSecc: async (ctx): Promise<SeccEndpoint> => {
      log('EVCC')[security.pnc ? 'info' : 'warn']({ pnc: security.pnc, paymentOptions: security.paymentOptions, sdpSecurity: security.sdpSecurity, cp: 'EVCC_SECURITY_POLICY' }, `security policy: ${security.reason}`);
      const localAddress = await parts.localAddress?.();
      const found = await discoverSecc({ udp: parts.udp, clock, log: log('SDP') }, {
        iface: parts.iface, ...(localAddress ? { localAddress } : {}), settings: { ...settings.sdp, security: security.sdpSecurity }, signal: ctx.signal,
      });
      return { address: found.address, port: found.port, security: found.security, iface: found.iface };
    },

    openChannel: async (e, ctx) => {
      plan = channelPlan(security, e.security, prefs);
      const p = plan;
      const planSummary = { pnc: p.pnc, offer: p.offer.map((x) => x.namespace), reason: p.reason };
      log('EVCC')[e.security === 'tls' ? 'info' : 'warn']({ channel: p.channel, pnc: p.pnc, cp: 'EVCC_CHANNEL_PLAN' }, `channel plan: ${p.reason}`);
      if (p.channel === 'tcp') {
        if (!parts.tcp) throw new EvccError('EVCC_NO_TCP', `SECC [${e.address}]:${e.port} offers no TLS and this vehicle has no plain-TCP connector`);
        const stream = await parts.tcp.connect({ host: e.address, port: e.port, iface: e.iface ?? parts.iface, timeoutMs: settings.tls.handshakeTimeoutMs, signal: ctx.signal });
        log('TCP').info({ address: e.address, port: e.port, cp: 'TCP_CONNECTED' }, `plain TCP connection to [${e.address}]:${e.port} established (no TLS: EIM only)`);
        return { channel: { kind: 'tcp', stream, plan: p }, summary: { kind: 'tcp', protocol: 'TCP', plan: planSummary } };
      }
      const store = parts.store;
      if (!store) {
        throw new EvccError('EVCC_TRUST_UNAVAILABLE', `no verified V2G roots in this state (${readiness.ready ? 'store' : readiness.code}): the SECC cannot be authenticated, and an unverified store is never used`);
      }
      const tlsLog = log('TLS');
      const connect = (signal: AbortSignal) => connectTls({ connector: parts.tls, trust: store, log: tlsLog }, {
        secc: { address: e.address, port: e.port, iface: e.iface ?? parts.iface }, profile: settings.tls.profile, timeoutMs: settings.tls.handshakeTimeoutMs,
        validateBeforeClientAuth: settings.tls.validateBeforeClientAuth, clientAuthVerdictMs: settings.tls.clientAuthVerdictMs, signal,
        ...(parts.vehicleCredentials ? { vehicle: parts.vehicleCredentials } : {}), ...(parts.keyLog ? { keyLog: parts.keyLog } : {}),
      });
      if (!parts.rootFetcher) {
        const ch = await connect(ctx.signal);
        tlsLog.info({ protocol: ch.protocol, cipher: ch.cipher, cp: 'TLS_ESTABLISHED' }, 'connection established');
        return { channel: { kind: 'tls', stream: ch.stream, plan: p }, summary: { kind: 'tls', protocol: ch.protocol, cipher: ch.cipher, plan: planSummary } };
      }
      const r = await openTlsWithRootFetch({
        connect, fetcher: parts.rootFetcher, store: rootStoreOf(store, { log: log('PKI') }), clock, log: { tls: tlsLog, ota: log('OTA') },
        settings: settings.ota, peer: `[${e.address}]:${e.port}`,
      }, ctx);
      return {
        channel: { kind: 'tls', stream: r.channel.stream, plan: p },
        summary: {
          kind: 'tls', protocol: r.channel.protocol, cipher: r.channel.cipher, plan: planSummary,
          ...(r.summary.installedRoot ? { installedRoot: r.summary.installedRoot } : {}),
          ...(r.summary.recoveryMs !== undefined ? { recoveryMs: Math.round(r.summary.recoveryMs) } : {}),
        },
      };
    },

    session: async (channel, ctx: SessionStageContext): Promise<SessionResult> => {
      const contract = channel.plan.pnc ? await currentContract() : undefined;
      const provisioningCertificate = channel.plan.pnc ? parts.store?.getOemProvisioningChain()?.[0] : undefined;
      const modules = sessionModules({
        plan: channel.plan, evccId: parts.evccId, settings: settings.session, wallClock: parts.wallClock(), plugInAt: ctx.plugInAt,
        ...(contract ? { contract } : {}), ...(ctx.resume ? { resume: ctx.resume } : {}),
        ...(provisioningCertificate ? { provisioningCertificate } : {}),
        ...(channel.plan.pnc && parts.store ? { rootCertificateIds: rootCertificateIdsOf(parts.store) } : {}),
      });
      return runV2gSession({
        stream: channel.stream, clock, log, ev: parts.ev, effects, signal: ctx.signal,
        engine: { offer: channel.plan.offer, modules, timers: new TimerTable(settings.session.timeouts) },
        onCheckpoint: (id) => { if (id === 'SESSION_SETUP_OK') ctx.setupComplete(); },
        ...(parts.onMessage ? { onMessage: parts.onMessage } : {}),
      });
    },

    // After SessionStop(Pause) the vehicle goes on when its pause request is withdrawn (polled: the EV port has no
    // events); a caller may supply another trigger.
    waitForResume: o.waitForResume ?? (async (signal) => {
      while (parts.ev.status().pauseRequested) await clock.sleep(250, signal);
    }),
    closeChannel: async (channel) => {
      await channel.stream.close().catch(() => undefined);
    },
  };
  return {
    stages, security, lastPlan: () => plan,
    release: async () => {
      await link?.close().catch(() => undefined);
      link = undefined;
    },
  };
}

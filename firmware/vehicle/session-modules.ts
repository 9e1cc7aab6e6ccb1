/**
 * Which protocol modules a session offers, with their options: the channel plan decides the namespaces (DIN only on
 * plain TCP, PnC only on TLS); each module gets the EVCCID, its own settings section, the contract (PnC) and the
 * SessionID of a paused session to resume.
 */
import type { ModuleFactory } from '../session/engine.ts';
import { createDinModule } from '../session/din/module.ts';
import type { ProtocolModule } from '../session/exchange.ts';
import { iso2ModuleFactory } from '../session/iso2/module.ts';
import type { ChannelPlan, ProtocolPreferences } from './policy.ts';
import { DIN_NAMESPACE, ISO2_NAMESPACE } from './policy.ts';
import type { VehicleSessionSettings } from './session-settings.ts';

export { VehicleSessionSettings } from './session-settings.ts';

/** The contract the vehicle holds (PaymentDetailsReq): eMAID and the chain as the ISO-2 type carries it. */
export interface ContractCredentials {
  emaid: string;
  certificateChain: { Certificate: string; SubCertificates?: { Certificate: string[] } };
  /** Contract certificate expiry (CertificateUpdate within the renewal window). */
  notAfter?: Date;
}


export interface SessionModuleOptions {
  plan: ChannelPlan;
  evccId: Uint8Array;
  settings: VehicleSessionSettings;
  contract?: ContractCredentials;
  /** CertificateInstallationReq: the OEM provisioning certificate (DER) and the installed roots' ids. */
  provisioningCertificate?: Uint8Array;
  rootCertificateIds?: readonly { X509IssuerName: string; X509SerialNumber: number | bigint }[];
  /** Calendar time at session start (contract expiry); injected, never read here. */
  wallClock: Date;
  /** Plug-in time on the engine's clock (DIN's ReadyToCharge timeout runs from there). */
  plugInAt?: number;
  resume?: { sessionId: string };
}

export function sessionModules(o: SessionModuleOptions): Record<string, ModuleFactory> {
  const out: Record<string, ModuleFactory> = {};
  for (const p of o.plan.offer) {
    if (p.namespace === ISO2_NAMESPACE) out[p.namespace] = iso2Factory(o);
    if (p.namespace === DIN_NAMESPACE) out[p.namespace] = dinFactory(o);
  }
  return out;
}

function iso2Factory(o: SessionModuleOptions): ModuleFactory {
  return iso2ModuleFactory({
    evccId: o.evccId, channel: o.plan.channel, pnc: o.plan.pnc, settings: o.settings.iso2, wallClock: o.wallClock,
    ...(o.contract ? { contract: o.contract } : {}),
    ...(o.provisioningCertificate ? { provisioningCertificate: o.provisioningCertificate } : {}),
    ...(o.rootCertificateIds ? { rootCertificateIds: o.rootCertificateIds } : {}),
    ...(o.resume ? { resume: o.resume } : {}),
  });
}
function dinFactory(o: SessionModuleOptions): ModuleFactory {
  // DIN SPEC 70121 has neither PnC nor pause: the module gets the EVCCID and its settings only.
  return () => createDinModule({ evccId: o.evccId, settings: o.settings.din, ...(o.plugInAt !== undefined ? { plugInAt: o.plugInAt } : {}) }) as ProtocolModule<unknown>;
}

export type { ProtocolPreferences };

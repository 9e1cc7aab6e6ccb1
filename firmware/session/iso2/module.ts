/**
 * The ISO 15118-2 EV-side protocol module (DC and AC, Plug & Charge and EIM) on the session engine: the steps of
 * PROTOCOLS.md §6 in order, the stop path from each, the header, and the summary for the session report.
 *
 *   SessionSetup → ServiceDiscovery → [ServiceDetail] → PaymentServiceSelection
 *   → PnC: [CertificateInstallation | CertificateUpdate] → PaymentDetails → Authorization | EIM: Authorization
 *   → ChargeParameterDiscovery
 *   → DC: CableCheck → PreCharge → PowerDelivery(Start) → CurrentDemand … → PowerDelivery(Stop) → WeldingDetection
 *   → AC: PowerDelivery(Start) → ChargingStatus … [MeteringReceipt] → PowerDelivery(Stop)
 *   → SessionStop(Terminate | Pause)
 *   Renegotiation: PowerDelivery(Renegotiate) → ChargeParameterDiscovery → PowerDelivery(Start) → loop.
 */
import type { ModuleFactory } from '../engine.ts';
import type { ProtocolModule, ProtocolSummary, Step } from '../exchange.ts';
import { chargingStatus } from './ac.ts';
import { chargeParameterDiscovery, meteringReceipt, powerDeliveryRenegotiate, powerDeliveryStart } from './charge.ts';
import { createIso2Ctx, type Iso2Ctx, type Iso2ModuleOptions } from './context.ts';
import { cableCheck, currentDemand, preCharge } from './dc.ts';
import { authorization, certificateInstallation, certificateUpdate, paymentDetails } from './payment.ts';
import { paymentServiceSelection, serviceDetail, serviceDiscovery, sessionSetup } from './setup.ts';
import { powerDeliveryStop, sessionStop, stopPath, weldingDetection } from './stop.ts';

export type { Iso2Contract, Iso2Ctx, Iso2ModuleOptions } from './context.ts';

export const ISO2_STEPS = {
  sessionSetup, serviceDiscovery, serviceDetail, paymentServiceSelection,
  certificateInstallation, certificateUpdate, paymentDetails, authorization,
  chargeParameterDiscovery, cableCheck, preCharge, powerDeliveryStart,
  currentDemand, chargingStatus, meteringReceipt, powerDeliveryRenegotiate,
  powerDeliveryStop, weldingDetection, sessionStop,
} as const satisfies Record<string, Step<Iso2Ctx>>;
export type Iso2StepName = keyof typeof ISO2_STEPS;

/** A fresh ISO-2 module (one per session). Throws CONFIG_INVALID for bad settings, EVCCID or resume SessionID. */
export function createIso2Module(options: Iso2ModuleOptions): ProtocolModule<Iso2Ctx> {
  const ctx = createIso2Ctx(options);
  return {
    protocol: 'iso2',
    schema: 'iso2',
    subsystem: 'ISO2',
    codePrefix: 'ISO2',
    first: 'sessionSetup',
    steps: ISO2_STEPS,
    ctx,
    header: (c) => ({ SessionID: c.sessionId ?? c.requestedSessionId }),
    expectedSessionId: (c) => c.sessionId,
    stopPath: (from, c) => stopPath(from, c),
    summary: summarize,
  };
}

/** The engine's factory for the ISO-2 namespace (options fixed when the session starts). */
export function iso2ModuleFactory(options: Iso2ModuleOptions): ModuleFactory {
  return () => createIso2Module(options) as ProtocolModule<unknown>;
}

function summarize(c: Iso2Ctx): ProtocolSummary {
  const evseLimits: Record<string, number> = {};
  if (c.evseDc) Object.assign(evseLimits, c.evseDc);
  if (c.evseAc) Object.assign(evseLimits, c.evseAc);
  const energyWh = c.energyEndWh !== undefined && c.energyStartWh !== undefined ? c.energyEndWh - c.energyStartWh : undefined;
  const meterWh = c.meterLastWh !== undefined && c.meterStartWh !== undefined ? c.meterLastWh - c.meterStartWh : undefined;
  return {
    protocol: 'iso2',
    ...(c.payment ? { payment: c.payment } : {}),
    ...(c.mode ? { energyTransferMode: c.mode } : {}),
    ...(c.sessionId ? { sessionId: c.sessionId } : {}),
    ...(c.evseId !== undefined ? { evseId: c.evseId } : {}),
    ...(Object.keys(evseLimits).length ? { evseLimits } : {}),
    ...(c.socStart !== undefined ? { socStartPercent: c.socStart } : {}),
    ...(c.socEnd !== undefined ? { socEndPercent: c.socEnd } : {}),
    ...(energyWh !== undefined ? { energyWh } : {}),
    ...(meterWh !== undefined ? { meterEnergyWh: meterWh } : {}),
    ...(c.contract ? { emaid: c.contract.emaid } : {}),
    ...(c.certOperation ? { certificateOperation: c.certOperation } : {}),
    resumed: c.resumed,
    paused: c.stopKind === 'Pause',
    renegotiations: c.renegotiations,
    ...(c.receipts ? { meteringReceipts: c.receipts } : {}),
    ...(c.endedBy ? { endedBy: c.endedBy } : {}),
    ...(c.weldingDetection ? { weldingDetection: c.weldingDetection } : {}),
  };
}

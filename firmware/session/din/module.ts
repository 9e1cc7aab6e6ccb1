/**
 * The DIN SPEC 70121 EV-side protocol module (DC, ExternalPayment, plain TCP) on the session engine: the steps of
 * PROTOCOLS.md §8 in order, the stop path from each, the header, and the summary for the session report.
 *
 *   sessionSetup → serviceDiscovery → servicePaymentSelection → contractAuthentication (Ongoing…) →
 *   chargeParameterDiscovery (Ongoing…) → cableCheck (S2 closed; Ongoing…) → preCharge (…) → contactors closed →
 *   powerDeliveryStart → currentDemand (loop) → powerDeliveryStop → S2 open, contactors open → weldingDetection (…) →
 *   sessionStop
 *
 * Usage (the composition root): `modules: { [DIN_NAMESPACE]: () => createDinModule({ evccId, settings, plugInAt }) }`.
 */
import type { ProtocolModule, ProtocolSummary } from '../exchange.ts';
import { createDinCtx, type DinCtx, type DinModuleOptions } from './context.ts';
import { cableCheck, chargeParameterDiscovery, currentDemand, powerDeliveryStart, preCharge } from './dc.ts';
import { contractAuthentication, serviceDiscovery, servicePaymentSelection, sessionSetup } from './setup.ts';
import { powerDeliveryStop, sessionStop, stopPath, weldingDetection } from './stop.ts';

export type { DinCtx, DinModuleOptions, EvseDcLimits } from './context.ts';
export type { DinSettings, DinSettingsInput } from './settings.ts';
export { DinSettings as DinSettingsSchema, parseDinSettings } from './settings.ts';
export { DIN_ERRORS, DinError, type DinErrorCode, type DinStopCode } from './errors.ts';
export { DIN_PACING, DIN_TIMERS } from './timers.ts';

/** SupportedAppProtocol namespace of DIN SPEC 70121:2012. */
export const DIN_NAMESPACE = 'urn:din:70121:2012:MsgDef';

export const DIN_STEPS = {
  sessionSetup,
  serviceDiscovery,
  servicePaymentSelection,
  contractAuthentication,
  chargeParameterDiscovery,
  cableCheck,
  preCharge,
  powerDeliveryStart,
  currentDemand,
  powerDeliveryStop,
  weldingDetection,
  sessionStop,
} as const;

export type DinStepName = keyof typeof DIN_STEPS;

/** What a DIN session reports (merged into the session report). */
export interface DinSummary extends ProtocolSummary {
  protocol: 'din';
  payment?: 'ExternalPayment';
  /** EVRequestedEnergyTransferType. */
  energyTransferMode?: string;
  /** SoC when energy transfer began and at the end, %. */
  socStart?: number;
  socEnd?: number;
  /** Energy delivered to the battery during energy transfer (the EV's own count), Wh. */
  energyWh?: number;
  /** The EVSE's last present voltage and current. */
  presentVoltageV?: number;
  presentCurrentA?: number;
  /** EVSEIsolationStatus of the last CableCheckRes. */
  isolation?: string;
  currentDemandRequests: number;
  weldingDetection?: 'safe' | 'voltage-stays-high' | 'unanswered';
  /** Why energy transfer ended, as this module decided (the report's reason may be a later failure, e.g. WeldingDetectionRes FAILED). */
  endedBy?: string;
}

export function createDinModule(options: DinModuleOptions): ProtocolModule<DinCtx> {
  const ctx = createDinCtx(options);
  return {
    protocol: 'din',
    schema: 'din',
    subsystem: 'DIN',
    codePrefix: 'DIN',
    first: 'sessionSetup',
    steps: DIN_STEPS,
    ctx,
    header: (c) => ({ SessionID: c.sessionId ?? c.settings.newSessionId }),
    expectedSessionId: (c) => c.sessionId,
    stopPath: (from, c) => stopPath(from, c),
    summary: dinSummary,
  };
}

export function dinSummary(c: DinCtx): DinSummary {
  const e = c.evse;
  return {
    protocol: 'din',
    ...(c.payment ? { payment: c.payment } : {}),
    ...(c.requestedTransferType ? { energyTransferMode: c.requestedTransferType } : {}),
    ...(c.sessionId ? { sessionId: c.sessionId } : {}),
    ...(c.evseId !== undefined ? { evseId: c.evseId } : {}),
    ...(e ? {
      evseLimits: {
        maxVoltageV: e.maxVoltageV, maxCurrentA: e.maxCurrentA, minVoltageV: e.minVoltageV, minCurrentA: e.minCurrentA, peakCurrentRippleA: e.peakCurrentRippleA,
        ...(e.maxPowerW !== undefined ? { maxPowerW: e.maxPowerW } : {}),
        ...(e.currentRegulationToleranceA !== undefined ? { currentRegulationToleranceA: e.currentRegulationToleranceA } : {}),
        ...(e.energyToBeDeliveredWh !== undefined ? { energyToBeDeliveredWh: e.energyToBeDeliveredWh } : {}),
      },
    } : {}),
    ...(c.socStart !== undefined ? { socStart: c.socStart } : {}),
    ...(c.socEnd !== undefined ? { socEnd: c.socEnd } : {}),
    ...(c.energyStartWh !== undefined && c.energyEndWh !== undefined ? { energyWh: c.energyEndWh - c.energyStartWh } : {}),
    ...(c.present ? { presentVoltageV: c.present.voltageV, ...(c.present.currentA !== undefined ? { presentCurrentA: c.present.currentA } : {}) } : {}),
    ...(c.isolation ? { isolation: c.isolation } : {}),
    currentDemandRequests: c.currentDemands,
    ...(c.weldingDetection ? { weldingDetection: c.weldingDetection } : {}),
    ...(c.pendingStop ? { endedBy: c.pendingStop.code } : {}),
  };
}

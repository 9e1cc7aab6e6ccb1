/**
 * The fields each DIN response must carry for the state that handles it (non-strict EXI lets a stream end an
 * element early, and field chargers do). Each check returns undefined when the response is usable, else the path of
 * the first missing or invalid field; the engine turns that into DIN_INVALID_RESPONSE naming it.
 *
 * PhysicalValues: Value and Multiplier (−3…3) are required, the Unit is optional in DIN (accepted absent); a Unit
 * that contradicts the field is refused when `strictUnits` is on.
 */
import type { DinCtx } from './context.ts';
import { UNITS_OF } from './values.ts';

type Res = Record<string, unknown>;
type Path = string | undefined;
type Quantity = keyof typeof UNITS_OF;

const isObj = (v: unknown): v is Res => typeof v === 'object' && v !== null && !Array.isArray(v);

function physical(ctx: DinCtx, v: unknown, path: string, q: Quantity, o: { optional?: boolean } = {}): Path {
  if (v === undefined) return o.optional ? undefined : path;
  if (!isObj(v)) return path;
  if (typeof v.Value !== 'number' || !Number.isFinite(v.Value)) return `${path}.Value`;
  if (typeof v.Multiplier !== 'number' || !Number.isInteger(v.Multiplier) || v.Multiplier < -3 || v.Multiplier > 3) return `${path}.Multiplier`;
  if (v.Unit !== undefined && ctx.settings.strictUnits && !UNITS_OF[q].includes(String(v.Unit))) return `${path}.Unit`;
  return undefined;
}

function dcEvseStatus(v: unknown, path: string, o: { optional?: boolean } = {}): Path {
  if (v === undefined) return o.optional ? undefined : path;
  if (!isObj(v)) return path;
  if (typeof v.EVSEStatusCode !== 'string') return `${path}.EVSEStatusCode`;
  if (typeof v.EVSENotification !== 'string') return `${path}.EVSENotification`;
  return undefined;
}

const processing = (res: Res): Path => (res.EVSEProcessing === 'Finished' || res.EVSEProcessing === 'Ongoing' ? undefined : 'EVSEProcessing');

export function checkSessionSetupRes(res: Res): Path {
  return typeof res.EVSEID === 'string' ? undefined : 'EVSEID';
}

export function checkServiceDiscoveryRes(res: Res): Path {
  const po = res.PaymentOptions;
  if (!isObj(po) || po.PaymentOption === undefined || (Array.isArray(po.PaymentOption) && po.PaymentOption.length === 0)) return 'PaymentOptions.PaymentOption';
  const cs = res.ChargeService;
  if (!isObj(cs)) return 'ChargeService';
  if (!isObj(cs.ServiceTag) || typeof cs.ServiceTag.ServiceID !== 'number') return 'ChargeService.ServiceTag.ServiceID';
  if (typeof cs.EnergyTransferType !== 'string') return 'ChargeService.EnergyTransferType';
  return undefined;
}

export function checkContractAuthenticationRes(res: Res): Path {
  return processing(res);
}

/** The EVSE's DC limits are mandatory once EVSEProcessing=Finished (Ongoing answers may omit them). */
export function checkChargeParameterDiscoveryRes(res: Res, ctx: DinCtx): Path {
  const p = processing(res);
  if (p || res.EVSEProcessing === 'Ongoing') return p;
  const cp = res.DC_EVSEChargeParameter;
  if (!isObj(cp)) return 'DC_EVSEChargeParameter';
  const at = (f: string) => `DC_EVSEChargeParameter.${f}`;
  return dcEvseStatus(cp.DC_EVSEStatus, at('DC_EVSEStatus'))
    ?? physical(ctx, cp.EVSEMaximumCurrentLimit, at('EVSEMaximumCurrentLimit'), 'A')
    ?? physical(ctx, cp.EVSEMaximumPowerLimit, at('EVSEMaximumPowerLimit'), 'W', { optional: true })
    ?? physical(ctx, cp.EVSEMaximumVoltageLimit, at('EVSEMaximumVoltageLimit'), 'V')
    ?? physical(ctx, cp.EVSEMinimumCurrentLimit, at('EVSEMinimumCurrentLimit'), 'A')
    ?? physical(ctx, cp.EVSEMinimumVoltageLimit, at('EVSEMinimumVoltageLimit'), 'V')
    ?? physical(ctx, cp.EVSECurrentRegulationTolerance, at('EVSECurrentRegulationTolerance'), 'A', { optional: true })
    ?? physical(ctx, cp.EVSEPeakCurrentRipple, at('EVSEPeakCurrentRipple'), 'A')
    ?? physical(ctx, cp.EVSEEnergyToBeDelivered, at('EVSEEnergyToBeDelivered'), 'Wh', { optional: true });
}

export function checkCableCheckRes(res: Res): Path {
  return dcEvseStatus(res.DC_EVSEStatus, 'DC_EVSEStatus') ?? processing(res);
}

export function checkPreChargeRes(res: Res, ctx: DinCtx): Path {
  return dcEvseStatus(res.DC_EVSEStatus, 'DC_EVSEStatus') ?? physical(ctx, res.EVSEPresentVoltage, 'EVSEPresentVoltage', 'V');
}

/** DC_EVSEStatus is optional in the schema (a substitution group); when present, its status is acted on. */
export function checkPowerDeliveryRes(res: Res): Path {
  return dcEvseStatus(res.DC_EVSEStatus, 'DC_EVSEStatus', { optional: true });
}

export function checkCurrentDemandRes(res: Res, ctx: DinCtx): Path {
  return dcEvseStatus(res.DC_EVSEStatus, 'DC_EVSEStatus')
    ?? physical(ctx, res.EVSEPresentVoltage, 'EVSEPresentVoltage', 'V')
    ?? physical(ctx, res.EVSEPresentCurrent, 'EVSEPresentCurrent', 'A')
    ?? physical(ctx, res.EVSEMaximumVoltageLimit, 'EVSEMaximumVoltageLimit', 'V', { optional: true })
    ?? physical(ctx, res.EVSEMaximumCurrentLimit, 'EVSEMaximumCurrentLimit', 'A', { optional: true })
    ?? physical(ctx, res.EVSEMaximumPowerLimit, 'EVSEMaximumPowerLimit', 'W', { optional: true });
}

export function checkWeldingDetectionRes(res: Res, ctx: DinCtx): Path {
  return dcEvseStatus(res.DC_EVSEStatus, 'DC_EVSEStatus') ?? physical(ctx, res.EVSEPresentVoltage, 'EVSEPresentVoltage', 'V');
}

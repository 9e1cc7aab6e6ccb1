/**
 * Mandatory-field checks of each response, for what the EV's state relies on. The schema makes most of these fields
 * mandatory, but EXI is decoded non-strict (PROTOCOLS.md §4): a stream may end an element early, and a choice may
 * carry the abstract member (`EVSEChargeParameter`) instead of the DC/AC one. Each check returns the path of the
 * first missing or invalid field (the engine raises ISO2_INVALID_RESPONSE naming it), or undefined.
 */
import type { Iso2Ctx } from './context.ts';
import { asArray, isDc } from './context.ts';
import { isPhysical } from './values.ts';

type Res = Record<string, unknown>;
type Rule = [path: string, ok: (v: unknown) => boolean];

function at(obj: unknown, path: string): unknown {
  let v: unknown = obj;
  for (const key of path.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = Array.isArray(v) ? (key === '0' ? v[0] : undefined) : (v as Record<string, unknown>)[key];
  }
  return v;
}

const present = (v: unknown) => v !== undefined && v !== null;
const str = (v: unknown) => typeof v === 'string';
const int = (v: unknown) => typeof v === 'number' && Number.isInteger(v);
const nonEmpty = (v: unknown) => asArray(v).length > 0;
const nonNegative = (v: unknown) => isPhysical(v) && (v as { Value: number }).Value >= 0;
const hexBytes = (n: number) => (v: unknown) => typeof v === 'string' && v.length === 2 * n && /^[0-9a-fA-F]*$/.test(v);

function firstFailing(res: Res, rules: readonly Rule[]): string | undefined {
  for (const [path, ok] of rules) if (!ok(at(res, path))) return path;
  return undefined;
}

const DC_STATUS = (prefix: string): Rule[] => [
  [`${prefix}DC_EVSEStatus`, present],
  [`${prefix}DC_EVSEStatus.EVSEStatusCode`, str],
  [`${prefix}DC_EVSEStatus.EVSENotification`, str],
];
const AC_STATUS = (prefix: string): Rule[] => [
  [`${prefix}AC_EVSEStatus`, present],
  [`${prefix}AC_EVSEStatus.EVSENotification`, str],
  [`${prefix}AC_EVSEStatus.RCD`, int],
];

export const checkSessionSetupRes = (res: Res) => firstFailing(res, [['EVSEID', str]]);

export const checkServiceDiscoveryRes = (res: Res) => firstFailing(res, [
  ['PaymentOptionList.PaymentOption', nonEmpty],
  ['ChargeService.ServiceID', int],
  ['ChargeService.SupportedEnergyTransferMode.EnergyTransferMode', nonEmpty],
]);

export const checkServiceDetailRes = (res: Res) => firstFailing(res, [['ServiceID', int]]);

const CERTIFICATE_RES: Rule[] = [
  ['ContractSignatureCertChain.Certificate', str],
  ['ContractSignatureEncryptedPrivateKey.CONTENT', str],
  ['DHpublickey.CONTENT', str],
  ['eMAID.CONTENT', str],
  ['SAProvisioningCertificateChain.Certificate', str],
];
export const checkCertificateRes = (res: Res) => firstFailing(res, CERTIFICATE_RES);

/** GenChallenge is what the contract key signs in AuthorizationReq: exactly 16 bytes. */
export const checkPaymentDetailsRes = (res: Res) => firstFailing(res, [['GenChallenge', hexBytes(16)], ['EVSETimeStamp', present]]);

export const checkAuthorizationRes = (res: Res) => firstFailing(res, [['EVSEProcessing', str]]);

export function checkChargeParameterDiscoveryRes(res: Res, ctx: Iso2Ctx): string | undefined {
  const common: Rule[] = [['EVSEProcessing', str]];
  const mode: Rule[] = isDc(ctx)
    ? [
      ['DC_EVSEChargeParameter', present],
      ...DC_STATUS('DC_EVSEChargeParameter.'),
      ['DC_EVSEChargeParameter.EVSEMaximumVoltageLimit', nonNegative],
      ['DC_EVSEChargeParameter.EVSEMaximumCurrentLimit', nonNegative],
      ['DC_EVSEChargeParameter.EVSEMaximumPowerLimit', nonNegative],
      ['DC_EVSEChargeParameter.EVSEMinimumVoltageLimit', nonNegative],
      ['DC_EVSEChargeParameter.EVSEMinimumCurrentLimit', nonNegative],
      ['DC_EVSEChargeParameter.EVSEPeakCurrentRipple', isPhysical],
    ]
    : [
      ['AC_EVSEChargeParameter', present],
      ...AC_STATUS('AC_EVSEChargeParameter.'),
      ['AC_EVSEChargeParameter.EVSENominalVoltage', nonNegative],
      ['AC_EVSEChargeParameter.EVSEMaxCurrent', nonNegative],
    ];
  // The schedule is only final once EVSEProcessing=Finished; PowerDeliveryReq names one of its tuples.
  const schedule: Rule[] = res.EVSEProcessing === 'Finished'
    ? [
      ['SAScheduleList.SAScheduleTuple', nonEmpty],
      ['SAScheduleList.SAScheduleTuple.0.SAScheduleTupleID', int],
      ['SAScheduleList.SAScheduleTuple.0.PMaxSchedule.PMaxScheduleEntry', nonEmpty],
    ]
    : [];
  return firstFailing(normalizeTuples(res), [...common, ...mode, ...schedule]);
}

/** A single SAScheduleTuple may decode as an object: look at it as the list the path expects. */
function normalizeTuples(res: Res): Res {
  const list = res.SAScheduleList as { SAScheduleTuple?: unknown } | undefined;
  if (!list || list.SAScheduleTuple === undefined || Array.isArray(list.SAScheduleTuple)) return res;
  return { ...res, SAScheduleList: { ...list, SAScheduleTuple: [list.SAScheduleTuple] } };
}

export const checkCableCheckRes = (res: Res) => firstFailing(res, [...DC_STATUS(''), ['EVSEProcessing', str]]);

export const checkPreChargeRes = (res: Res) => firstFailing(res, [...DC_STATUS(''), ['EVSEPresentVoltage', nonNegative]]);

export function checkPowerDeliveryRes(res: Res, ctx: Iso2Ctx): string | undefined {
  return firstFailing(res, isDc(ctx) ? DC_STATUS('') : AC_STATUS(''));
}

export const checkCurrentDemandRes = (res: Res) => firstFailing(res, [
  ...DC_STATUS(''),
  ['EVSEPresentVoltage', nonNegative],
  ['EVSEPresentCurrent', isPhysical],
]);

export const checkChargingStatusRes = (res: Res) => firstFailing(res, [...AC_STATUS(''), ['EVSEID', str], ['SAScheduleTupleID', int]]);

export const checkWeldingDetectionRes = (res: Res) => firstFailing(res, [['EVSEPresentVoltage', nonNegative]]);

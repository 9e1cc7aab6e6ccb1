/**
 * SessionSetup → ServiceDiscovery → ServicePaymentSelection (ExternalPayment, the DC charge service) →
 * ContractAuthentication (repeated while EVSEProcessing=Ongoing, paced and bounded).
 *
 * DIN SPEC 70121 has no Plug & Charge: the payment is always ExternalPayment (RFID, app, free charging), which the
 * charger authorises on its own while it answers Ongoing.
 */
import type { Din } from '../../exi/index.ts';
import { next, type Step } from '../exchange.ts';
import { checkContractAuthenticationRes, checkServiceDiscoveryRes, checkSessionSetupRes } from './checks.ts';
import { asArray, beginSeries, readyToChargeExpired, repeatWithin, stopInOrder, timer, type DinCtx } from './context.ts';
import { dinStop } from './errors.ts';
import { evStop } from './status.ts';
import { DIN_PACING, DIN_TIMERS } from './timers.ts';

export const sessionSetup: Step<DinCtx> = {
  request: 'SessionSetupReq',
  response: 'SessionSetupRes',
  timeout: (ctx) => timer(ctx, DIN_TIMERS.msgDefault),
  build: (ctx, env) => {
    ctx.setupAt ??= env.now;
    return { body: { SessionSetupReq: { EVCCID: ctx.evccId } }, summary: `EVCCID ${ctx.evccId}` };
  },
  check: checkSessionSetupRes,
  handle: (r, ctx, env) => {
    const res = r as unknown as Din.SessionSetupResType;
    const sid = typeof env.header?.SessionID === 'string' ? env.header.SessionID.toLowerCase() : undefined;
    if (sid === undefined || !/^([0-9a-f]{2}){1,8}$/.test(sid)) {
      return stopInOrder(ctx, env, dinStop('DIN_SESSION_ID_INVALID', `SessionSetupRes assigns no usable SessionID (${String(env.header?.SessionID)})`));
    }
    // Kept, not refused: the SessionID is the charger's to choose; later requests simply carry it.
    if (/^0+$/.test(sid)) env.note('warn', `SessionSetupRes: the charger assigns the all-zero SessionID ${sid}`);
    if (res.ResponseCode === 'OK_OldSessionJoined') env.note('warn', 'SessionSetupRes: OK_OldSessionJoined although DIN SPEC 70121 has no session to resume; continuing as a new session');
    ctx.sessionId = sid;
    ctx.evseId = res.EVSEID;
    return next('serviceDiscovery', { why: `session ${sid}` });
  },
  summarize: (r) => `${String(r.ResponseCode)}, EVSEID ${String(r.EVSEID)}`,
};

export const serviceDiscovery: Step<DinCtx> = {
  request: 'ServiceDiscoveryReq',
  response: 'ServiceDiscoveryRes',
  timeout: (ctx) => timer(ctx, DIN_TIMERS.msgDefault),
  build: () => ({ body: { ServiceDiscoveryReq: {} } }),
  check: checkServiceDiscoveryRes,
  handle: (r, ctx, env) => {
    const res = r as unknown as Din.ServiceDiscoveryResType;
    ctx.offeredPayments = asArray(res.PaymentOptions.PaymentOption).map(String);
    ctx.chargeService = { serviceId: res.ChargeService.ServiceTag.ServiceID, energyTransferType: res.ChargeService.EnergyTransferType, free: res.ChargeService.FreeService === 1 };
    // Nothing refused here: a DIN charger that lists no ExternalPayment cannot charge anyone (DIN has no contract
    // payment to fall back on); it answers FAILED_PaymentSelectionInvalid if it means it, and that is typed.
    if (!ctx.offeredPayments.includes('ExternalPayment')) {
      env.note('warn', `ServiceDiscoveryRes offers ${ctx.offeredPayments.join(', ')}: selecting ExternalPayment anyway (the only payment of DIN SPEC 70121)`);
    }
    if (!ctx.chargeService.energyTransferType.includes('DC')) {
      env.note('warn', `ServiceDiscoveryRes: the charge service is ${ctx.chargeService.energyTransferType}; requesting ${ctx.settings.energyTransferType} (DIN SPEC 70121 is DC only)`);
    }
    return next('servicePaymentSelection');
  },
  summarize: (r) => {
    const res = r as unknown as Partial<Din.ServiceDiscoveryResType>;
    return `${String(res.ResponseCode)}, ${asArray(res.PaymentOptions?.PaymentOption).join('/')}, service ${String(res.ChargeService?.ServiceTag?.ServiceID)} ${String(res.ChargeService?.EnergyTransferType)}`;
  },
};

export const servicePaymentSelection: Step<DinCtx> = {
  request: 'ServicePaymentSelectionReq',
  response: 'ServicePaymentSelectionRes',
  timeout: (ctx) => timer(ctx, DIN_TIMERS.msgDefault),
  build: (ctx) => {
    const serviceId = ctx.chargeService?.serviceId ?? 1;
    const body: Din.ServicePaymentSelectionReqType = { SelectedPaymentOption: 'ExternalPayment', SelectedServiceList: { SelectedService: [{ ServiceID: serviceId }] } };
    return { body: { ServicePaymentSelectionReq: body }, summary: `ExternalPayment, service ${serviceId}` };
  },
  handle: (_r, ctx) => {
    ctx.payment = 'ExternalPayment';
    return next('contractAuthentication');
  },
  summarize: (r) => String(r.ResponseCode),
};

export const contractAuthentication: Step<DinCtx> = {
  request: 'ContractAuthenticationReq',
  response: 'ContractAuthenticationRes',
  timeout: (ctx) => timer(ctx, DIN_TIMERS.msgDefault),
  // EIM: neither GenChallenge nor Id (those belong to a contract signature DIN never uses).
  build: (ctx, env) => {
    beginSeries(ctx, 'contractAuthentication', env.now);
    return { body: { ContractAuthenticationReq: {} }, ...(ctx.series!.requests > 1 ? { summary: `#${ctx.series!.requests}` } : {}) };
  },
  check: checkContractAuthenticationRes,
  handle: (r, ctx, env) => {
    const ev = evStop(env, { inLoop: false });
    if (ev) return stopInOrder(ctx, env, ev);
    if (r.EVSEProcessing === 'Finished') return next('chargeParameterDiscovery', { why: 'authorised' });
    if (ctx.series?.requests === 1) env.note('info', 'ContractAuthentication: EVSEProcessing=Ongoing, waiting for the charger to authorise (RFID, app)');
    return readyToChargeExpired(ctx, env)
      ?? repeatWithin(ctx, env, { total: DIN_TIMERS.ongoing, pacing: DIN_PACING.ongoingRepeat, code: 'DIN_ONGOING_TIMEOUT', what: 'ContractAuthentication: EVSEProcessing=Ongoing', details: { message: 'ContractAuthenticationRes' } });
  },
  summarize: (r) => String(r.EVSEProcessing),
};

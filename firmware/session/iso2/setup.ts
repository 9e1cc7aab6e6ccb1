/**
 * Session setup: SessionSetup → ServiceDiscovery → [ServiceDetail] → PaymentServiceSelection.
 * Here the payment option and the energy transfer mode are decided, and whether the contract needs a
 * CertificateInstallation or CertificateUpdate first.
 */
import type { Iso2 } from '../../exi/index.ts';
import { failWith, next, stopWith, type Step, type StepEnv, type Transition } from '../exchange.ts';
import { ISO2_TIMERS } from '../timers.ts';
import { checkServiceDetailRes, checkServiceDiscoveryRes, checkSessionSetupRes } from './checks.ts';
import { asArray, responseHeader, timer, type CertificateOperation, type Iso2Ctx, type PaymentOption } from './context.ts';
import { Iso2Error, iso2Stop } from './errors.ts';
import type { EnergyTransferMode } from './settings.ts';

const DAY_MS = 86_400_000;
/** ISO 15118-2 Table 105 (as open implementations use it): the Certificate service's parameter sets. */
const CERTIFICATE_PARAMETER_SET: Record<CertificateOperation, { id: number; name: string }> = {
  installation: { id: 1, name: 'Installation' },
  update: { id: 2, name: 'Update' },
};

export const sessionSetup: Step<Iso2Ctx> = {
  request: 'SessionSetupReq',
  response: 'SessionSetupRes',
  timeout: (ctx) => timer(ctx, ISO2_TIMERS.msgDefault),
  build: (ctx) => ({
    body: { SessionSetupReq: { EVCCID: ctx.evccId } },
    summary: `EVCCID ${ctx.evccId}, SessionID ${ctx.requestedSessionId}${ctx.options.resume ? ' (resume)' : ' (new)'}`,
  }),
  check: checkSessionSetupRes,
  handle: (res, ctx, env) => {
    const header = responseHeader(env);
    if (!header) return failWith(new Iso2Error('ISO2_RESPONSE_HEADER_UNAVAILABLE', 'SessionSetupRes: the host gives the module no response header (SessionID unknown)'));
    const sid = typeof header.SessionID === 'string' ? header.SessionID.toLowerCase() : undefined;
    if (!sid || !/^[0-9a-f]{2,16}$/.test(sid) || /^0+$/.test(sid)) {
      return stopWith(iso2Stop('ISO2_SESSION_ID_INVALID', `SessionSetupRes assigns no usable SessionID (${String(header.SessionID)})`));
    }
    ctx.sessionId = sid;
    ctx.evseId = String(res.EVSEID);
    const code = res.ResponseCode;
    if (ctx.options.resume) {
      if (code === 'OK_OldSessionJoined' && sid === ctx.requestedSessionId) {
        ctx.resumed = true;
        env.note('info', `paused session ${sid} resumed at EVSE ${ctx.evseId}`);
      } else {
        env.note('warn', `the SECC did not join paused session ${ctx.requestedSessionId} (${String(code)}): new session ${sid}`, { requested: ctx.requestedSessionId, sessionId: sid });
      }
    } else {
      env.note('info', `session ${sid} established at EVSE ${ctx.evseId}`, { sessionId: sid, evseId: ctx.evseId });
    }
    return next('serviceDiscovery');
  },
  summarize: (res) => `${String(res.ResponseCode)}, EVSEID ${String(res.EVSEID)}`,
};

export const serviceDiscovery: Step<Iso2Ctx> = {
  request: 'ServiceDiscoveryReq',
  response: 'ServiceDiscoveryRes',
  timeout: (ctx) => timer(ctx, ISO2_TIMERS.msgDefault),
  build: () => ({ body: { ServiceDiscoveryReq: {} } }),
  check: checkServiceDiscoveryRes,
  handle: (r, ctx, env) => {
    const res = r as unknown as Iso2.ServiceDiscoveryResType;
    const offeredModes = asArray(res.ChargeService.SupportedEnergyTransferMode.EnergyTransferMode) as EnergyTransferMode[];
    const mode = ctx.settings.energyTransferModes.find((m) => offeredModes.includes(m));
    if (!mode) {
      return stopWith(iso2Stop('ISO2_ENERGY_TRANSFER_MODE_UNSUPPORTED', `the SECC offers ${offeredModes.join(', ')}; this vehicle charges with ${ctx.settings.energyTransferModes.join(', ')}`, { offered: offeredModes }));
    }
    ctx.mode = mode;
    ctx.chargeServiceId = res.ChargeService.ServiceID;
    ctx.offeredPayments = asArray(res.PaymentOptionList.PaymentOption);
    const cert = asArray(res.ServiceList?.Service).find((s) => s.ServiceCategory === 'ContractCertificate');
    if (cert) ctx.certService = { serviceId: cert.ServiceID };
    const decided = decidePayment(ctx, env);
    if (decided) return decided;
    return ctx.certOperation ? next('serviceDetail') : next('paymentServiceSelection');
  },
  summarize: (res) => {
    const r = res as unknown as Partial<Iso2.ServiceDiscoveryResType>;
    return `${asArray(r.PaymentOptionList?.PaymentOption).join('/')}; ${asArray(r.ChargeService?.SupportedEnergyTransferMode?.EnergyTransferMode).join(', ')}${asArray(r.ServiceList?.Service).length ? `; services ${asArray(r.ServiceList?.Service).map((s) => s.ServiceCategory).join(', ')}` : ''}`;
  },
};

/**
 * Contract only when the policy allows PnC AND the channel is TLS AND the SECC offers it (PROTOCOLS.md §7: some
 * chargers offer Contract on plain TCP: never used there). Sets ctx.payment and ctx.certOperation; returns a stop
 * when no option both sides can use remains.
 */
function decidePayment(ctx: Iso2Ctx, env: StepEnv): Transition | undefined {
  const offersContract = ctx.offeredPayments.includes('Contract');
  if (offersContract && ctx.options.channel === 'tcp') {
    env.note('warn', 'the SECC offers Contract on a plain-TCP session: the contract is never used without TLS, ExternalPayment instead');
  }
  if (ctx.options.pnc && ctx.options.channel === 'tls' && offersContract) {
    const plan = contractPlan(ctx, env);
    if (plan.usable) {
      ctx.payment = 'Contract';
      if (plan.operation) ctx.certOperation = plan.operation;
      return undefined;
    }
    env.note('warn', `Plug & Charge not possible here: ${plan.why}`);
  }
  return fallBackToExternalPayment(ctx, env, offersContract ? 'Contract is not usable on this session' : 'the SECC offers no Contract');
}

function fallBackToExternalPayment(ctx: Iso2Ctx, env: StepEnv, why: string): Transition | undefined {
  ctx.certOperation = undefined;
  if (!ctx.offeredPayments.includes('ExternalPayment')) {
    return stopWith(iso2Stop('ISO2_NO_PAYMENT_OPTION', `the SECC offers ${ctx.offeredPayments.join(', ')} only, and ${why}`, { offered: ctx.offeredPayments, channel: ctx.options.channel, pnc: ctx.options.pnc }));
  }
  ctx.payment = 'ExternalPayment';
  env.note('info', `payment: ExternalPayment (${why})`);
  return undefined;
}

function contractPlan(ctx: Iso2Ctx, env: StepEnv): { usable: boolean; operation?: CertificateOperation; why?: string } {
  const c = ctx.options.contract;
  const now = ctx.options.wallClock?.getTime();
  const expired = c?.notAfter && now !== undefined && c.notAfter.getTime() <= now;
  // CertificateInstallation/UpdateReq list the installed V2G roots (at least one) so the SECC picks a CPS chain we trust.
  const haveRoots = (ctx.options.rootCertificateIds?.length ?? 0) > 0;
  const canInstall = ctx.certService !== undefined && ctx.options.provisioningCertificate !== undefined && haveRoots;
  if (!c || expired) {
    if (canInstall) return { usable: true, operation: 'installation' };
    const lack = !ctx.certService ? 'the SECC offers no certificate service' : ctx.options.provisioningCertificate === undefined ? 'no provisioning certificate' : 'no installed V2G root to list';
    return { usable: false, why: `${c ? 'the contract certificate expired' : 'no contract installed'} and ${lack} for a CertificateInstallation` };
  }
  const renewWithin = ctx.settings.certificateRenewalDays * DAY_MS;
  if (c.notAfter && now !== undefined && c.notAfter.getTime() - now < renewWithin) {
    const days = Math.floor((c.notAfter.getTime() - now) / DAY_MS);
    if (ctx.certService && haveRoots) return { usable: true, operation: 'update' };
    env.note('warn', `the contract certificate expires in ${days} day(s) and ${ctx.certService ? 'no installed V2G root to list' : 'the SECC offers no certificate service'} for a CertificateUpdate: charging with it as it is`);
  }
  return { usable: true };
}

export const serviceDetail: Step<Iso2Ctx> = {
  request: 'ServiceDetailReq',
  response: 'ServiceDetailRes',
  timeout: (ctx) => timer(ctx, ISO2_TIMERS.msgServiceDetail),
  build: (ctx) => ({ body: { ServiceDetailReq: { ServiceID: ctx.certService!.serviceId } }, summary: `ServiceID ${ctx.certService!.serviceId} (contract certificate)` }),
  check: checkServiceDetailRes,
  handle: (r, ctx, env) => {
    const res = r as unknown as Iso2.ServiceDetailResType;
    const op = ctx.certOperation!;
    const wanted = CERTIFICATE_PARAMETER_SET[op];
    const sets = asArray(res.ServiceParameterList?.ParameterSet);
    const byName = sets.find((ps) => asArray(ps.Parameter).some((p) => p.stringValue?.toLowerCase() === wanted.name.toLowerCase()));
    const chosen = byName ?? sets.find((ps) => ps.ParameterSetID === wanted.id);
    if (chosen) {
      ctx.certService = { serviceId: ctx.certService!.serviceId, parameterSetId: chosen.ParameterSetID };
      return next('paymentServiceSelection');
    }
    ctx.certService = undefined;
    if (op === 'update') {
      env.note('warn', 'the SECC\'s certificate service offers no Update: charging with the current contract');
      ctx.certOperation = undefined;
      return next('paymentServiceSelection');
    }
    env.note('warn', 'the SECC\'s certificate service offers no Installation: Plug & Charge not possible here');
    return fallBackToExternalPayment(ctx, env, 'no contract could be installed') ?? next('paymentServiceSelection');
  },
  summarize: (res) => `${asArray((res as unknown as Iso2.ServiceDetailResType).ServiceParameterList?.ParameterSet).length} parameter set(s)`,
};

export const paymentServiceSelection: Step<Iso2Ctx> = {
  request: 'PaymentServiceSelectionReq',
  response: 'PaymentServiceSelectionRes',
  timeout: (ctx) => timer(ctx, ISO2_TIMERS.msgDefault),
  build: (ctx) => {
    const selected: Iso2.SelectedServiceType[] = [{ ServiceID: ctx.chargeServiceId! }];
    if (ctx.certOperation && ctx.certService?.parameterSetId !== undefined) {
      selected.push({ ServiceID: ctx.certService.serviceId, ParameterSetID: ctx.certService.parameterSetId });
    }
    return {
      body: { PaymentServiceSelectionReq: { SelectedPaymentOption: ctx.payment!, SelectedServiceList: { SelectedService: selected } } },
      summary: `${ctx.payment}, ${ctx.mode}${ctx.certOperation ? `, contract certificate ${ctx.certOperation}` : ''}`,
    };
  },
  handle: (_res, ctx) => {
    if (ctx.payment !== 'Contract') return next('authorization');
    if (ctx.certOperation === 'installation') return next('certificateInstallation');
    if (ctx.certOperation === 'update') return next('certificateUpdate');
    return next('paymentDetails');
  },
};

export type { PaymentOption };

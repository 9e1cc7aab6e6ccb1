/**
 * Payment and authorization: PnC [CertificateInstallation | CertificateUpdate] → PaymentDetails → Authorization
 * (signed with the contract key), EIM: Authorization alone. Authorization repeats while EVSEProcessing=Ongoing,
 * paced, within V2G_EVCC_Ongoing_Timeout.
 */
import { toHex } from '../../../core/bytes.ts';
import type { Iso2 } from '../../exi/index.ts';
import { failWith, next, type Step, type StepEnv } from '../exchange.ts';
import { ISO2_TIMERS, PACING } from '../timers.ts';
import { checkAuthorizationRes, checkCertificateRes, checkPaymentDetailsRes } from './checks.ts';
import { asArray, beginSeries, isOngoing, isPnc, repeatWithin, responseHeader, timer, type CertificateOperation, type Iso2Ctx } from './context.ts';
import { Iso2Error } from './errors.ts';

/** The Id attribute the signature's Reference points at (`#id1`); one signed element per message. */
const SIGNED_ID = 'id1';

function rootIds(ctx: Iso2Ctx): Iso2.ListOfRootCertificateIDsType {
  return { RootCertificateID: (ctx.options.rootCertificateIds ?? []).map((r) => ({ X509IssuerName: r.X509IssuerName, X509SerialNumber: r.X509SerialNumber })) };
}

const hexOf = (v: Uint8Array | string): string => (typeof v === 'string' ? v.toLowerCase() : toHex(v));

/** A chain as PaymentDetailsReq carries it (no Id attribute). */
function plainChain(c: { Certificate: string; SubCertificates?: { Certificate: string[] | string } }): Iso2.CertificateChainType {
  const subs = asArray(c.SubCertificates?.Certificate);
  return { Certificate: c.Certificate, ...(subs.length ? { SubCertificates: { Certificate: subs } } : {}) };
}

/** The response of an installation or update: run `installContract` (verify, import into the TPM), then PaymentDetails. */
function onCertificateRes(operation: CertificateOperation) {
  return (res: Record<string, unknown>, ctx: Iso2Ctx, env: StepEnv) => {
    const header = responseHeader(env);
    if (!header) return failWith(new Iso2Error('ISO2_RESPONSE_HEADER_UNAVAILABLE', `Certificate${operation === 'installation' ? 'Installation' : 'Update'}Res: the host gives the module no response header (its signature cannot be verified)`));
    ctx.installedChain = plainChain(res.ContractSignatureCertChain as Iso2.CertificateChainType);
    if (operation === 'update' && typeof res.RetryCounter === 'number') env.note('info', `CertificateUpdateRes RetryCounter ${res.RetryCounter}`);
    return next('paymentDetails', { effects: [{ kind: 'installContract', operation, response: res, header }], why: `contract ${operation} received` });
  };
}

const summarizeCertificateRes = (res: Record<string, unknown>) => `eMAID ${String((res.eMAID as { CONTENT?: string } | undefined)?.CONTENT ?? '?')}`;

export const certificateInstallation: Step<Iso2Ctx> = {
  request: 'CertificateInstallationReq',
  response: 'CertificateInstallationRes',
  timeout: (ctx) => timer(ctx, ISO2_TIMERS.msgCertificateInstallation),
  build: (ctx) => {
    const element = {
      CertificateInstallationReq: { Id: SIGNED_ID, OEMProvisioningCert: hexOf(ctx.options.provisioningCertificate!), ListOfRootCertificateIDs: rootIds(ctx) },
    };
    return { body: element, sign: { key: 'provisioning', elements: [element] }, summary: `${rootIds(ctx).RootCertificateID.length} root(s) listed` };
  },
  check: checkCertificateRes,
  handle: onCertificateRes('installation'),
  summarize: summarizeCertificateRes,
};

export const certificateUpdate: Step<Iso2Ctx> = {
  request: 'CertificateUpdateReq',
  response: 'CertificateUpdateRes',
  timeout: (ctx) => timer(ctx, ISO2_TIMERS.msgCertificateUpdate),
  build: (ctx) => {
    const c = ctx.options.contract!;
    const element = {
      CertificateUpdateReq: { Id: SIGNED_ID, ContractSignatureCertChain: plainChain(c.certificateChain), eMAID: c.emaid, ListOfRootCertificateIDs: rootIds(ctx) },
    };
    return { body: element, sign: { key: 'contract', elements: [element] }, summary: `eMAID ${c.emaid}` };
  },
  check: checkCertificateRes,
  handle: onCertificateRes('update'),
  summarize: summarizeCertificateRes,
};

/**
 * The contract PaymentDetailsReq presents: the one just installed (eMAID as installContract verified it; the chain
 * from the result when it carries one, else the verified response's ContractSignatureCertChain), or the installed one.
 */
function contractFor(ctx: Iso2Ctx, env: StepEnv): { emaid: string; chain: Iso2.CertificateChainType } {
  const installed = ctx.certOperation ? env.effectResults.installContract as ({ emaid: string; chain?: Iso2.CertificateChainType } | undefined) : undefined;
  if (installed) return { emaid: installed.emaid, chain: plainChain(installed.chain ?? ctx.installedChain!) };
  const c = ctx.options.contract!;
  return { emaid: c.emaid, chain: plainChain(c.certificateChain) };
}

export const paymentDetails: Step<Iso2Ctx> = {
  request: 'PaymentDetailsReq',
  response: 'PaymentDetailsRes',
  timeout: (ctx) => timer(ctx, ISO2_TIMERS.msgPaymentDetails),
  build: (ctx, env) => {
    const c = contractFor(ctx, env);
    ctx.contract = c;
    return {
      body: { PaymentDetailsReq: { eMAID: c.emaid, ContractSignatureCertChain: c.chain } },
      summary: `eMAID ${c.emaid}, chain of ${1 + asArray(c.chain.SubCertificates?.Certificate).length}`,
    };
  },
  check: checkPaymentDetailsRes,
  handle: (res, ctx, env) => {
    if (res.ResponseCode === 'OK_CertificateExpiresSoon') env.note('warn', `the SECC says the contract certificate of ${ctx.contract?.emaid} expires soon`);
    ctx.genChallenge = String(res.GenChallenge).toLowerCase();
    return next('authorization');
  },
  summarize: (res) => `${String(res.ResponseCode)}, GenChallenge ${String(res.GenChallenge)}`,
};

export const authorization: Step<Iso2Ctx> = {
  request: 'AuthorizationReq',
  response: 'AuthorizationRes',
  timeout: (ctx) => timer(ctx, ISO2_TIMERS.msgDefault),
  build: (ctx, env) => {
    beginSeries(ctx, 'authorization', env.now);
    if (!isPnc(ctx)) return { body: { AuthorizationReq: {} }, summary: 'EIM' };
    // PnC: the contract key signs Id + GenChallenge; the signature goes into the header.
    const element = { AuthorizationReq: { Id: SIGNED_ID, GenChallenge: ctx.genChallenge! } };
    return { body: element, sign: { key: 'contract', elements: [element] }, summary: `PnC, GenChallenge ${ctx.genChallenge}` };
  },
  check: checkAuthorizationRes,
  handle: (res, ctx, env) => {
    if (res.EVSEProcessing === 'Finished') return next('chargeParameterDiscovery', { why: 'authorized' });
    if (isOngoing(res.EVSEProcessing)) {
      return repeatWithin(ctx, env, { total: ISO2_TIMERS.ongoing, pacing: PACING.ongoingRepeat, code: 'ISO2_ONGOING_TIMEOUT', what: `Authorization: EVSEProcessing=${String(res.EVSEProcessing)}` });
    }
    return failWith(new Iso2Error('ISO2_INVALID_RESPONSE', `AuthorizationRes EVSEProcessing ${String(res.EVSEProcessing)}`, { message: 'AuthorizationRes', field: 'EVSEProcessing' }));
  },
  summarize: (res) => `${String(res.ResponseCode)}, ${String(res.EVSEProcessing)}`,
};

import { describe, expect, it } from 'vitest';
import { channelPlan, DEFAULT_PROTOCOL_PREFERENCES, DIN_NAMESPACE, ISO2_NAMESPACE, securityPolicy } from './policy.ts';

const ready = { ready: true as const, version: 3, contractKey: 'k1' };
const refused = { ready: false as const, code: 'TPM_POLICY_NOT_APPROVED', message: 'tampered bundle' };

describe('security policy: PnC needs the armed contract key and TLS; EIM otherwise, said so', () => {
  it('a ready key service: PnC and EIM, SDP asks for TLS', () => {
    const p = securityPolicy(ready);
    expect(p).toMatchObject({ pnc: true, paymentOptions: ['Contract', 'ExternalPayment'], sdpSecurity: 'tls-preferred' });
    expect(p.degraded).toBeUndefined();
    expect(securityPolicy(ready, { ...DEFAULT_PROTOCOL_PREFERENCES, pncSdpSecurity: 'tls-required' }).sdpSecurity).toBe('tls-required');
  });

  it('a refusing key service: EIM only, the refusal in the report', () => {
    const p = securityPolicy(refused);
    expect(p).toMatchObject({ pnc: false, paymentOptions: ['ExternalPayment'], degraded: { code: 'TPM_POLICY_NOT_APPROVED' } });
    expect(p.reason).toMatch(/degraded mode, EIM only/);
  });

  it('TLS: ISO-2 only, never DIN inside TLS; PnC only if the policy allows it', () => {
    for (const policy of [securityPolicy(ready), securityPolicy(refused)]) {
      const plan = channelPlan(policy, 'tls');
      expect(plan.channel).toBe('tls');
      expect(plan.offer.map((o) => o.namespace)).toEqual([ISO2_NAMESPACE]);
      expect(plan.pnc).toBe(policy.pnc);
    }
  });

  it('no TLS: plain TCP, PnC never, ISO-2 and DIN by the configured priorities', () => {
    const plan = channelPlan(securityPolicy(ready), 'none');
    expect(plan).toMatchObject({ channel: 'tcp', pnc: false });
    expect(plan.offer.map((o) => [o.namespace, o.priority])).toEqual([[ISO2_NAMESPACE, 1], [DIN_NAMESPACE, 2]]);
    expect(plan.reason).toMatch(/PnC not used: it needs TLS/);
    const dinFirst = channelPlan(securityPolicy(refused), 'none', { ...DEFAULT_PROTOCOL_PREFERENCES, iso2Priority: 2, dinPriority: 1 });
    expect(dinFirst.offer.map((o) => o.namespace)).toEqual([DIN_NAMESPACE, ISO2_NAMESPACE]);
    expect(channelPlan(securityPolicy(refused), 'none', { ...DEFAULT_PROTOCOL_PREFERENCES, din: false }).offer).toHaveLength(1);
  });
});

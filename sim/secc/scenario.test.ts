import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isEvccError } from '../../core/errors.ts';
import { defaultScenario, listScenarios, loadScenario, paymentOptionsOf, parseScenario } from './scenario.ts';

/** The scenarios the charger simulator must declare (one file each). */
const REQUIRED = [
  'normal-dc-pnc', 'normal-dc-eim', 'normal-ac-pnc', 'normal-ac-eim', 'din-only', 'no-tls', 'ongoing-authorization-10s', 'ongoing-forever',
  'slow-chargeparameterdiscovery', 'slow-powerdelivery', 'slow-cablecheck', 'cablecheck-ongoing-forever', 'welding-never-answered',
  'welding-failed', 'welding-voltage-stays-high', 'tcp-reset-in-loop', 'wrong-sessionid', 'failed-signature', 'failed-certificate-expired',
  'emergency-shutdown', 'evse-stop-charging', 'renegotiation', 'overvoltage', 'din-picks-over-iso', 'unknown-root',
];

describe('scenario files', () => {
  it('every required scenario has a file, and every file loads and validates', () => {
    const names = listScenarios();
    expect(names).toEqual(expect.arrayContaining(REQUIRED));
    for (const name of names) {
      const s = loadScenario(name);
      expect(s.name).toBe(name);
      expect(s.description.length).toBeGreaterThan(10);
    }
  });

  it('declare what they say: transports, protocols, overrides', () => {
    expect(loadScenario('din-only')).toMatchObject({ transport: 'tcp', protocols: { supported: ['din'] } });
    expect(loadScenario('din-picks-over-iso').protocols).toEqual({ supported: ['din', 'iso2'], choice: 'secc-preference' });
    expect(loadScenario('unknown-root').chain).toBe('pki-b');
    expect(loadScenario('ongoing-forever').ongoing).toMatchObject({ Authorization: 'forever', ContractAuthentication: 'forever' });
    expect(loadScenario('slow-powerdelivery').delays).toEqual({ PowerDelivery: 1500 });
    expect(loadScenario('welding-never-answered').silent).toEqual(['WeldingDetection']);
    expect(loadScenario('normal-ac-pnc').loop.receiptRequiredAt).toBe(3);
    // PnC only over TLS unless a scenario says otherwise.
    expect(paymentOptionsOf(loadScenario('no-tls'), false)).toEqual(['ExternalPayment']);
    expect(paymentOptionsOf(loadScenario('normal-dc-pnc'), true)).toEqual(['Contract', 'ExternalPayment']);
    expect(paymentOptionsOf(loadScenario('pnc-offered-over-tcp'), false)).toEqual(['Contract', 'ExternalPayment']);
    expect(defaultScenario('tcp')).toMatchObject({ name: 'default', transport: 'tcp', ongoing: { CableCheck: 1000 } });
  });

  it('bad files give typed errors: unknown name, not JSON, schema violations with their paths', () => {
    const codeOf = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (err) {
        return isEvccError(err) ? err.code : 'untyped';
      }
      return undefined;
    };
    expect(codeOf(() => loadScenario('no-such-scenario'))).toBe('SIM_SCENARIO_NOT_FOUND');
    expect(codeOf(() => loadScenario('../etc/passwd'))).toBe('SIM_SCENARIO_NOT_FOUND');
    const dir = mkdtempSync(join(tmpdir(), 'evcc-scenario-'));
    writeFileSync(join(dir, 'broken.json'), '{ "description": ');
    expect(codeOf(() => loadScenario(join(dir, 'broken.json')))).toBe('SIM_SCENARIO_JSON');
    writeFileSync(join(dir, 'mine.json'), JSON.stringify({ description: 'my charger', transport: 'tcp', delays: { CableCheck: 700 } }));
    expect(loadScenario(join(dir, 'mine.json'))).toMatchObject({ name: 'mine', delays: { CableCheck: 700 } });

    const issues = (v: unknown): string[] => {
      try {
        parseScenario(v);
      } catch (err) {
        expect(isEvccError(err, 'SIM_SCENARIO_INVALID')).toBe(true);
        return (err as { details: { issues: string[] } }).details.issues;
      }
      return [];
    };
    expect(issues({ transport: 'tcp' }).join()).toMatch(/description/);
    expect(issues({ description: 'x', transport: 'udp' }).join()).toMatch(/transport/);
    expect(issues({ description: 'x', transport: 'tcp', delays: { CurrentDemand: -1 } }).join()).toMatch(/delays\.CurrentDemand/);
    expect(issues({ description: 'x', transport: 'tcp', responseCodes: { Authorization: 'FAILED_Whatever' } }).join()).toMatch(/responseCodes\.Authorization/);
    expect(issues({ description: 'x', transport: 'tcp', typo: 1 }).join()).toMatch(/typo/);
    expect(issues({ description: 'x', transport: 'tcp', charger: { energyTransferModes: ['AC_three_phase_core'] } }).join()).toMatch(/DIN SPEC 70121 is DC only/);
  });
});

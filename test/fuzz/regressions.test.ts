/**
 * Replays every saved fuzz failure (test/fuzz/regressions/<family>/<hash>.bin|json): each must now give a clean
 * decode or a typed EvccError — no other exception, no oracle violation (campaign.ts / core.ts).
 */
import { describe, expect, it } from 'vitest';
import { loadCases } from './regressions.ts';
import { FAMILY_NAMES, target } from './targets/index.ts';

const cases = loadCases();

describe('fuzz regressions replay', () => {
  it('every saved case belongs to a known family', () => {
    for (const c of cases) expect(FAMILY_NAMES, `${c.family}/${c.name}`).toContain(c.family);
  });

  for (const c of cases) {
    it(`${c.family}/${c.name}: typed error or clean decode`, async () => {
      const t = await target(c.family);
      const outcome = await t.run(t.fromFile(c.file));
      expect(['ok', 'rejected']).toContain(outcome);
    });
  }
});

/** Every fuzzed decoder family, by name (`npm run fuzz -- --family NAME`). */
import 'reflect-metadata';
import type { Target } from '../core.ts';
import { exi } from './exi.ts';
import { pilot, qca, sdp, slac, v2gtp, v2gtpStream } from './link.ts';
import { ota } from './ota.ts';
import { x509 } from './pki.ts';
import { session } from './session.ts';

export const FAMILIES: Readonly<Record<string, () => Promise<Target<unknown>>>> = {
  slac: async () => slac() as Target<unknown>,
  qca: async () => qca() as Target<unknown>,
  sdp: async () => sdp() as Target<unknown>,
  v2gtp: async () => v2gtp() as Target<unknown>,
  'v2gtp-stream': async () => v2gtpStream() as Target<unknown>,
  exi: async () => exi() as Target<unknown>,
  pilot: async () => pilot() as Target<unknown>,
  ota: async () => (await ota()) as Target<unknown>,
  x509: async () => (await x509()) as Target<unknown>,
  session: async () => (await session()) as Target<unknown>,
};

/**
 * EVCC_FUZZ_SELFTEST=1 adds `selftest`, a target that misbehaves on purpose (campaign.test.ts checks run.ts with
 * it): seed 1 hangs, seed 2 is slow (150 ms CPU), seed 3 throws a TypeError; everything else decodes.
 */
const selftest = (): Target<Uint8Array> => ({
  name: 'selftest', what: 'the campaign machinery itself (hang, slow, crash on purpose)',
  seeds: () => [Uint8Array.of(0), Uint8Array.of(0xee), Uint8Array.of(0x55), Uint8Array.of(0x66)],
  generate: () => Uint8Array.of(1),
  run: (b) => {
    if (b[0] === 0xee) for (;;);
    if (b[0] === 0x55) {
      // 150 ms of CPU (not of wall time): slow however loaded the machine is.
      const c0 = process.cpuUsage();
      while ((({ user, system }) => user + system)(process.cpuUsage(c0)) < 150_000);
    }
    if (b[0] === 0x66) throw new TypeError('selftest crash');
    return 'ok';
  },
  toFile: (b) => ({ ext: 'bin', data: b }),
  fromFile: (f) => f.data as Uint8Array,
});
if (process.env.EVCC_FUZZ_SELFTEST === '1') (FAMILIES as Record<string, () => Promise<Target<unknown>>>).selftest = async () => selftest() as Target<unknown>;

export const FAMILY_NAMES = Object.keys(FAMILIES);

const created = new Map<string, Promise<Target<unknown>>>();
/** The family's target, created once per process (set-up can be costly: a test PKI, session credentials). */
export function target(name: string): Promise<Target<unknown>> {
  const make = FAMILIES[name];
  if (!make) throw new Error(`unknown fuzz family ${name} (known: ${FAMILY_NAMES.join(', ')})`);
  let t = created.get(name);
  if (!t) created.set(name, (t = make()));
  return t;
}

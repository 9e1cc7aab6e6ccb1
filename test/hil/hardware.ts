/**
 * The hardware a HIL run uses, named in the environment (test/hil/README.md). Nothing is guessed: a device that is
 * not named is not touched, and its tests are reported as NOT RUN — never as passed.
 */
import { isAbsolute, join } from 'node:path';

export interface HilHardware {
  /** EVCC_HIL_PLC_IFACE: netdev of the QCA7000 PLC modem (AF_PACKET SLAC, SDP, TLS), e.g. eth1. */
  plcIface?: string;
  /** EVCC_HIL_PILOT: serial device of the pilot board (evcc-pilot/1), e.g. /dev/ttyACM0. */
  pilot?: string;
  /** EVCC_HIL_PILOT_BAUD: its baud rate (default 115200). */
  pilotBaud: number;
  /** EVCC_HIL_TPM: TCTI of the vehicle TPM, e.g. device:/dev/tpmrm0. */
  tpm?: string;
  /** EVCC_HIL_CHARGER: fixed SECC address `[fe80::…%eth1]:port` (skips SDP in the TLS probe). */
  charger?: { address: string; port: number };
  /** EVCC_HIL_ROOTS: V2G root PEM files (colon-separated) for the TLS probe. */
  roots: string[];
  /** EVCC_HIL_CONFIG: the vehicle config for whole sessions (default deploy/config/evcc.bench.json). */
  config: string;
  /** EVCC_HIL_LINK_UP=1: the PLC link is up by other means (ethernet to the charger controller): no SLAC. */
  linkUp: boolean;
  /** EVCC_HIL_PLUGGED=1: the vehicle inlet is plugged into a charger that offers high-level communication. */
  plugged: boolean;
  /** EVCC_HIL_OPERATOR=1: someone at the bench plugs and unplugs when told (service test). */
  operator: boolean;
}

const flag = (v: string | undefined) => /^(1|true|yes)$/i.test(v ?? '');

export function hilHardware(env: NodeJS.ProcessEnv = process.env, repo = process.cwd()): HilHardware {
  let charger: HilHardware['charger'];
  const c = env.EVCC_HIL_CHARGER;
  if (c) {
    const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(c);
    if (!m) throw new Error(`EVCC_HIL_CHARGER must look like [fe80::1%eth1]:61851, got ${c}`);
    charger = { address: m[1]!, port: Number(m[2]) };
  }
  const config = env.EVCC_HIL_CONFIG ?? join(repo, 'deploy/config/evcc.bench.json');
  return {
    ...(env.EVCC_HIL_PLC_IFACE ? { plcIface: env.EVCC_HIL_PLC_IFACE } : {}),
    ...(env.EVCC_HIL_PILOT ? { pilot: env.EVCC_HIL_PILOT } : {}),
    pilotBaud: Number(env.EVCC_HIL_PILOT_BAUD ?? 115200),
    ...(env.EVCC_HIL_TPM ? { tpm: env.EVCC_HIL_TPM } : {}),
    ...(charger ? { charger } : {}),
    roots: (env.EVCC_HIL_ROOTS ?? '').split(':').filter(Boolean),
    config: isAbsolute(config) ? config : join(repo, config),
    linkUp: flag(env.EVCC_HIL_LINK_UP),
    plugged: flag(env.EVCC_HIL_PLUGGED),
    operator: flag(env.EVCC_HIL_OPERATOR),
  };
}

/** The hardware variables that select tests (the others only refine them). */
export const HIL_DEVICE_VARIABLES = ['EVCC_HIL_PLC_IFACE', 'EVCC_HIL_PILOT', 'EVCC_HIL_TPM'] as const;

/** Why a test cannot run on this hardware, or undefined when it can. */
export function missing(h: HilHardware, needs: readonly ('plcIface' | 'pilot' | 'tpm' | 'roots' | 'operator' | 'plugged')[]): string | undefined {
  const names: Record<string, string> = {
    plcIface: 'EVCC_HIL_PLC_IFACE', pilot: 'EVCC_HIL_PILOT', tpm: 'EVCC_HIL_TPM', roots: 'EVCC_HIL_ROOTS', operator: 'EVCC_HIL_OPERATOR=1', plugged: 'EVCC_HIL_PLUGGED=1',
  };
  const absent = needs.filter((n) => (n === 'roots' ? h.roots.length === 0 : !h[n]));
  return absent.length ? `needs ${absent.map((n) => names[n]).join(', ')}` : undefined;
}

/**
 * The dashboard's service and system configuration (Kilic, Fig. 12: "Service Config", "System Config"): the
 * validated configuration, read-only; the TPM and measured-boot state; the security policy and, in degraded mode,
 * why. Pure: the composition root hands in what it knows.
 */

export interface SystemSource {
  /** The validated configuration (the parsed sections, defaults filled in). */
  config: Record<string, unknown>;
  /** Where the vehicle trust came from ('tpm', 'tpm-degraded', 'bench-env', 'none'). */
  trustSource?: string;
  /** The key service's answer at start. */
  readiness: { ready: true; version: number; contractKey?: string } | { ready: false; code: string; message: string };
  /** The security policy of the session (PnC / EIM, SDP security, and why). */
  security?: { pnc: boolean; paymentOptions: string[]; sdpSecurity: string; reason: string; degraded?: { code: string; message: string } };
  /** Measured boot: the release measured into PCR 14 this boot, or why there is none. */
  boot?: { version: number; pcr14?: string; bundleSha256?: string } | { error: string };
  /** The TPM: its TCTI, or why the bench runs without one. */
  tpm?: { tcti?: string; skipped?: string };
  /** What runs: 'bench' (simulated parts) or 'service'. */
  mode: 'bench' | 'service';
}

export interface SystemView {
  mode: 'bench' | 'service';
  security: { mode: 'pnc' | 'eim-only'; degraded: boolean; why: string; sdpSecurity?: string; paymentOptions?: string[] };
  tpm: { state: string; tcti?: string; trustSource?: string };
  boot: { state: string; version?: number; pcr14?: string; bundleSha256?: string };
  /** The validated config, with anything that looks like a secret replaced. */
  config: Record<string, unknown>;
}

/** Config keys whose values are never shown (the config holds paths, but a bench config may carry more). */
const SECRET_KEY = /pass(word|phrase)?|secret|token|privatekey|^key$/i;

export function redactConfig(v: unknown, depth = 0): unknown {
  if (depth > 8) return '…';
  if (Array.isArray(v)) return v.map((x) => redactConfig(x, depth + 1));
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, SECRET_KEY.test(k) ? '(hidden)' : redactConfig(x, depth + 1)]));
  }
  return v;
}

export function systemView(s: SystemSource): SystemView {
  const r = s.readiness;
  const degraded = s.security?.degraded ?? (r.ready ? undefined : { code: r.code, message: r.message });
  const pnc = s.security?.pnc ?? r.ready;
  const tpmState = s.tpm?.skipped
    ? `no TPM (${s.tpm.skipped}): no key service`
    : r.ready
      ? `key service ready (release v${r.version})${r.contractKey ? `, contract key ${r.contractKey} armed` : ', no contract yet'}`
      : `key service refused: ${r.code}`;
  const boot = s.boot === undefined
    ? { state: 'unknown' }
    : 'error' in s.boot
      ? { state: `not measured: ${s.boot.error}` }
      : {
        state: `release v${s.boot.version} measured into PCR 14`, version: s.boot.version,
        ...(s.boot.pcr14 ? { pcr14: s.boot.pcr14 } : {}), ...(s.boot.bundleSha256 ? { bundleSha256: s.boot.bundleSha256 } : {}),
      };
  return {
    mode: s.mode,
    security: {
      mode: pnc ? 'pnc' : 'eim-only', degraded: degraded !== undefined,
      why: degraded ? `degraded mode (${degraded.code}): ${degraded.message}` : (s.security?.reason ?? (pnc ? 'Plug & Charge available' : 'EIM only')),
      ...(s.security ? { sdpSecurity: s.security.sdpSecurity, paymentOptions: s.security.paymentOptions } : {}),
    },
    tpm: { state: tpmState, ...(s.tpm?.tcti ? { tcti: s.tpm.tcti } : {}), ...(s.trustSource ? { trustSource: s.trustSource } : {}) },
    boot,
    config: redactConfig(s.config) as Record<string, unknown>,
  };
}

import { z } from 'zod';
import { SDP_MAX_REQUESTS, SDP_RESPONSE_TIMEOUT_MS } from './constants.ts';

/**
 * SDP settings (config section `sdp`). Defaults are the standard's values; relaxations are explicit.
 * - `security`: what we ask for and accept. `tls-required` (default; mandatory when the contract is to be used,
 *   i.e. PnC): a no-TLS answer ends SDP with SDP_TLS_REQUIRED. `tls-preferred` (EIM only): a no-TLS answer is
 *   accepted and logged as a WARN downgrade. `no-tls`: ask for no TLS (bench diagnostics).
 */
export const SdpSettings = z
  .object({
    security: z.enum(['tls-required', 'tls-preferred', 'no-tls']).default('tls-required'),
    /** [V2G2-159] ≥ 250 ms. */
    responseTimeoutMs: z.number().int().min(SDP_RESPONSE_TIMEOUT_MS).max(10_000).default(SDP_RESPONSE_TIMEOUT_MS),
    /** [V2G2-161] ≤ 50. */
    maxRequests: z.number().int().min(1).max(SDP_MAX_REQUESTS).default(SDP_MAX_REQUESTS),
    /** Accept only fe80::/10 SECC addresses (the PLC link is link-local). */
    requireLinkLocal: z.boolean().default(true),
    /** Accept only SECC ports of the dynamic range 49152–65535. */
    requireDynamicPort: z.boolean().default(true),
  })
  .strict();
export type SdpSettings = z.infer<typeof SdpSettings>;
export type SdpSecurityPolicy = SdpSettings['security'];

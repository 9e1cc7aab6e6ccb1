import { z } from 'zod';
import { TLS13_CLIENT_AUTH_VERDICT_MS, TLS_HANDSHAKE_TIMEOUT_MS } from './profiles.ts';

/**
 * TLS settings (config section `tls`).
 * - `profile`: 'iso2-tls12' (ISO 15118-2) or 'iso20-tls13' (ISO 15118-20 / TR-2019-04 upgrade, mutual auth).
 * - `keyLogFile`: SSLKEYLOGFILE path for bench builds; absent by default (session secrets on disk otherwise).
 * - `clientAuthVerdictMs`: TLS 1.3 wait for the SECC's verdict on the vehicle certificate (0 = do not wait).
 */
export const TlsSettings = z
  .object({
    profile: z.enum(['iso2-tls12', 'iso20-tls13']).default('iso2-tls12'),
    handshakeTimeoutMs: z.number().int().min(500).max(20_000).default(TLS_HANDSHAKE_TIMEOUT_MS),
    keyLogFile: z.string().min(1).optional(),
    /** Mutual profiles: present the vehicle certificate only after a probe handshake validated the SECC chain. */
    validateBeforeClientAuth: z.boolean().default(false),
    clientAuthVerdictMs: z.number().int().min(0).max(5_000).default(TLS13_CLIENT_AUTH_VERDICT_MS),
  })
  .strict();
export type TlsSettings = z.infer<typeof TlsSettings>;

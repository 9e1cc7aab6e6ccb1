import { z } from 'zod';
import { OTA_RESERVE_AFTER_FETCH_MS, OTA_ROOT_FETCH_MAX_MS, OTA_ROOT_SYNC_INTERVAL_MS } from './constants.ts';

/**
 * The `ota` section of the runtime config. Defaults follow the standard's setup budget; `fallback` says what the
 * session does when the backend cannot supply a missing root in time — never plain TCP for PnC.
 */
export const OtaSettings = z.strictObject({
  enabled: z.boolean().default(true),
  /** `mqtts://host:port` (mutual TLS); `mqtt://127.0.0.1:port` only for the embedded bench broker. */
  brokerUrl: z.string().regex(/^mqtts?:\/\//).default('mqtt://127.0.0.1:1883'),
  protocolVersion: z.union([z.literal(4), z.literal(5)]).default(5),
  /** Link credentials (PEM files): the broker's CA, the vehicle's client certificate and key. */
  caFile: z.string().optional(),
  certFile: z.string().optional(),
  keyFile: z.string().optional(),
  reconnectPeriodMs: z.number().int().min(100).max(600_000).default(2_000),
  keepaliveSeconds: z.number().int().min(5).max(3_600).default(30),
  /** Time kept after the fetch for the TLS retry, SupportedAppProtocol and SessionSetup. */
  reserveAfterFetchMs: z.number().int().min(0).max(20_000).default(OTA_RESERVE_AFTER_FETCH_MS),
  /** Cap on one fetch. */
  rootFetchMaxMs: z.number().int().min(100).max(60_000).default(OTA_ROOT_FETCH_MAX_MS),
  fallback: z.enum(['retry-later', 'eim']).default('retry-later'),
  proactiveSync: z.strictObject({
    enabled: z.boolean().default(true),
    intervalMs: z.number().int().min(60_000).default(OTA_ROOT_SYNC_INTERVAL_MS),
    budgetMs: z.number().int().min(100).max(120_000).default(30_000),
  }).default({ enabled: true, intervalMs: OTA_ROOT_SYNC_INTERVAL_MS, budgetMs: 30_000 }),
});
export type OtaSettings = z.infer<typeof OtaSettings>;

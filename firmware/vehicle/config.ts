/**
 * The vehicle config (/etc/evcc/evcc.json): every section validated by its subsystem's own schema, and every
 * top-level key read by someone (a typo is named, never ignored). The composition root adds the sections of the HAL
 * parts it builds (pilot board, EV port), so firmware never imports a driver's settings.
 */
import type { z } from 'zod';
import { CaptureSettings } from '../capture/settings.ts';
import { DashboardSettings } from '../dashboard/settings.ts';
import { TpmSettings } from '../keys/settings.ts';
import { OtaSettings } from '../ota/settings.ts';
import { UpdateSettings } from '../ota/update/settings.ts';
import { SdpSettings } from '../sdp/settings.ts';
import { parseSettings, RuntimeSettings } from '../settings.ts';
import { SlacSettings } from '../slac/settings.ts';
import { TlsSettings } from '../tls/settings.ts';
import { VehicleSessionSettings } from './session-settings.ts';

export const FIRMWARE_CONFIG_SECTIONS = {
  slac: SlacSettings, sdp: SdpSettings, tls: TlsSettings, ota: OtaSettings, tpm: TpmSettings, session: VehicleSessionSettings, capture: CaptureSettings,
  dashboard: DashboardSettings, update: UpdateSettings,
} as const;

type Sections = typeof FIRMWARE_CONFIG_SECTIONS;
export type FirmwareConfig = { runtime: RuntimeSettings; unknownKeys: string[] } & { [K in keyof Sections]: z.infer<Sections[K]> };

/** Validates the whole config (CONFIG_INVALID names the bad key); `extra` are the HAL sections of the caller. */
export function parseVehicleConfig<E extends Record<string, z.ZodType>>(raw: Record<string, unknown>, extra: E = {} as E): FirmwareConfig & { [K in keyof E]: z.infer<E[K]> } {
  const runtime = parseSettings(RuntimeSettings, raw, 'config');
  const all: Record<string, z.ZodType> = { ...FIRMWARE_CONFIG_SECTIONS, ...extra };
  const known = new Set([...Object.keys(RuntimeSettings.shape), ...Object.keys(all)]);
  const out: Record<string, unknown> = { runtime, unknownKeys: Object.keys(raw).filter((k) => !known.has(k)) };
  for (const [key, schema] of Object.entries(all)) out[key] = parseSettings(schema, raw[key] ?? {}, key);
  return out as FirmwareConfig & { [K in keyof E]: z.infer<E[K]> };
}

import { pino, type DestinationStream, type Logger as PinoLogger, type LevelWithSilent } from 'pino';

/**
 * One logger for the whole runtime. Every line carries `sub` (subsystem: SLAC, SDP, TLS, APPHAND, …) so the bench
 * renderer can print `16:48:58.998 [INFO] SLAC: matching process successful` while the JSON underneath stays
 * machine-readable. Extra fields are structured context; `cp` is an optional stable checkpoint id.
 */
export type Logger = PinoLogger;
export type Subsystem =
  | 'EVCC' | 'SLAC' | 'MODEM' | 'SDP' | 'TLS' | 'PKI' | 'V2GTP' | 'EXI' | 'APPHAND' | 'SESSION' | 'ISO2' | 'DIN' | 'EV' | 'TCP'
  | 'TPM' | 'KEYS' | 'BOOT' | 'OTA' | 'OEM' | 'BUNDLE' | 'RAUC' | 'SIM' | 'BENCH' | 'PILOT' | 'SYSTEMD';

export interface LoggerOptions {
  level?: LevelWithSilent;
  destination: DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: undefined,
      timestamp: pino.stdTimeFunctions.epochTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination,
  );
}

export function forSubsystem(root: Logger, sub: Subsystem, bindings: Record<string, unknown> = {}): Logger {
  return root.child({ sub, ...bindings });
}

/** A logger that drops everything: for pure unit tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

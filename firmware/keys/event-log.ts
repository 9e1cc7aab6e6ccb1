import { EvccError } from '../../core/errors.ts';
import { pcrAfterExtend, toHex, ZERO_DIGEST } from './policy.ts';

/**
 * The measurement event log the initramfs hook (boot/initramfs/evcc-measure-rootfs) appends to, one line per extend:
 *
 *   # evcc-measure-log/1
 *   pcr=14 bank=sha256 event=rootfs digest=<64 hex> before=<64 hex|unreadable> size=<bytes|bytes(ext4)|whole> read=ok|failed source=<path>
 *
 * It is a claim, not evidence (it lives in a tmpfs any root process can write): `evcc boot` replays it and believes
 * it only if the replay equals the PCR the TPM reports. Pure: parsing and replay, no I/O.
 */
export const EVENT_LOG_FORMAT = '# evcc-measure-log/1';
/** Where the initramfs module writes it on the device (/run is moved into the new root by switch_root). */
export const DEFAULT_EVENT_LOG = '/run/evcc-boot/measurements.log';

export interface MeasurementEvent {
  pcr: number;
  bank: 'sha256';
  event: string;
  digest: Uint8Array;
  /** The PCR value the hook read before its extend (undefined: unreadable). */
  before?: Uint8Array;
  /** Bytes hashed: given (evcc.rootsize=), the ext4 superblock's file system size, or the whole slot. */
  size: number | 'whole';
  sizeFrom: 'given' | 'ext4' | 'whole';
  read: 'ok' | 'failed';
  source: string;
}

const HEX64 = /^[0-9a-f]{64}$/;

export function parseEventLog(text: string): MeasurementEvent[] {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const malformed = (why: string, line?: number) => new EvccError('BOOT_EVENT_LOG_MALFORMED', `measurement event log malformed: ${why}`, line === undefined ? {} : { line });
  if (lines[0] !== EVENT_LOG_FORMAT) throw malformed(`first line is not '${EVENT_LOG_FORMAT}'`, 1);
  return lines.slice(1).map((line, i) => {
    const n = i + 2;
    const at = line.indexOf(' source=');
    if (at < 0) throw malformed('no source field', n);
    const fields = new Map<string, string>();
    for (const token of line.slice(0, at).split(' ')) {
      const eq = token.indexOf('=');
      if (eq <= 0 || fields.has(token.slice(0, eq))) throw malformed(`bad field '${token}'`, n);
      fields.set(token.slice(0, eq), token.slice(eq + 1));
    }
    const get = (k: string): string => {
      const v = fields.get(k);
      if (v === undefined) throw malformed(`no ${k} field`, n);
      return v;
    };
    const pcr = get('pcr');
    if (!/^(1?[0-9]|2[0-3])$/.test(pcr)) throw malformed(`PCR '${pcr}' out of range`, n);
    if (get('bank') !== 'sha256') throw malformed(`bank '${get('bank')}' is not sha256`, n);
    const digest = get('digest');
    if (!HEX64.test(digest)) throw malformed('digest is not 32 bytes of hex', n);
    const before = get('before');
    if (before !== 'unreadable' && !HEX64.test(before)) throw malformed('before is not 32 bytes of hex', n);
    const size = get('size');
    const sized = /^([0-9]{1,15})(\(ext4\))?$/.exec(size);
    if (size !== 'whole' && !sized) throw malformed(`size '${size}' is not a byte count`, n);
    const read = get('read');
    if (read !== 'ok' && read !== 'failed') throw malformed(`read '${read}'`, n);
    const event = get('event');
    if (!/^[a-z0-9-]{1,32}$/.test(event)) throw malformed(`event '${event}'`, n);
    return {
      pcr: Number(pcr), bank: 'sha256' as const, event, digest: new Uint8Array(Buffer.from(digest, 'hex')),
      ...(before === 'unreadable' ? {} : { before: new Uint8Array(Buffer.from(before, 'hex')) }),
      size: sized ? Number(sized[1]) : 'whole' as const, sizeFrom: sized ? (sized[2] ? 'ext4' as const : 'given' as const) : 'whole' as const,
      read, source: line.slice(at + ' source='.length),
    };
  });
}

/** The PCR value the log claims: every event for `pcr`, extended in order from zero. */
export function replayEventLog(events: readonly MeasurementEvent[], pcr: number): Uint8Array {
  return extendAll(ZERO_DIGEST, events.filter((e) => e.pcr === pcr));
}

function extendAll(from: Uint8Array, events: readonly MeasurementEvent[]): Uint8Array {
  let value = from;
  for (const e of events) value = pcrAfterExtend(e.digest, value);
  return value;
}

/**
 * The one event an approved boot has: the hook's root file system measurement, extended into a PCR that was zero.
 * Checks the log against the PCR value the TPM reported and returns that event; every other history is refused with
 * the reason, for the log and the OEM backend (the TPM refuses the approved state anyway — this says why).
 */
export function rootfsMeasurement(events: readonly MeasurementEvent[], pcr: number, pcrValue: Uint8Array): MeasurementEvent {
  const mine = events.filter((e) => e.pcr === pcr);
  const replayed = replayEventLog(mine, pcr);
  if (toHex(replayed) !== toHex(pcrValue)) {
    const first = mine[0];
    const notZero = first?.before !== undefined && first.before.some((b) => b !== 0);
    const fromBefore = first?.before !== undefined && toHex(extendAll(first.before, mine)) === toHex(pcrValue);
    const why = mine.length === 0
      ? 'the log has no measurement, yet the PCR is not zero'
      : notZero && fromBefore
        ? 'PCR was not zero when the initramfs measured (the TPM missed its reset, or something extended it before)'
        : 'something extended the PCR outside the initramfs hook';
    throw new EvccError('BOOT_EVENT_LOG_MISMATCH', `PCR ${pcr} does not equal its replayed event log: ${why}`,
      { pcr, value: toHex(pcrValue), replayed: toHex(replayed), events: mine.length });
  }
  if (mine.length !== 1 || mine[0]!.event !== 'rootfs') {
    throw new EvccError('BOOT_PCR_UNEXPECTED', `PCR ${pcr} holds ${mine.length} event(s) (${mine.map((e) => e.event).join(', ') || 'none'}): an approved boot has exactly one, the root file system measurement`,
      { pcr, events: mine.map((e) => e.event) });
  }
  return mine[0]!;
}

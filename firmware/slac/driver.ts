import type { Clock, TimerId } from '../../hal/clock/types.ts';
import type { PlcLink } from '../../hal/plc/types.ts';
import type { Logger } from '../../core/logger.ts';
import { toHex } from './codec.ts';
import { SlacEngine, type SlacEvent, type SlacOutput, type SlacResult } from './engine.ts';
import { SlacError } from './errors.ts';
import { slacSettings, type SlacSettings } from './settings.ts';

export interface RunSlacOptions {
  link: PlcLink;
  clock: Clock;
  /** A SLAC subsystem logger (`forSubsystem(root, 'SLAC')`). */
  log: Logger;
  /** Validated settings, or a raw `slac` config section (validated here). */
  settings?: SlacSettings | Record<string, unknown>;
  signal?: AbortSignal;
  /** Random bytes (RunID, sound RND, SET_KEY nonce). Default: Web Crypto. */
  random?: (n: number) => Uint8Array;
  /** Called for every engine event (bench tools, tests); the driver logs them anyway. */
  onEvent?: (event: SlacEvent) => void;
}

const webRandom = (n: number): Uint8Array => globalThis.crypto.getRandomValues(new Uint8Array(n));

/**
 * Runs the SLAC engine on a PlcLink and a Clock: feeds received frames and timer expiries in, sends what it says,
 * logs every event, and settles with the match (or a typed SlacError). Leaves no timer or listener behind; the
 * link stays open (the caller owns it).
 */
export function runSlac(options: RunSlacOptions): Promise<SlacResult> {
  const { link, clock, log, signal } = options;
  const settings = slacSettings(options.settings ?? {});
  const random = options.random ?? webRandom;
  const engine = new SlacEngine({ mac: link.mac, settings, runId: random(8), random });

  return new Promise<SlacResult>((resolve, reject) => {
    let timer: TimerId | undefined;
    let settled = false;
    let sending: Promise<void> = Promise.resolve();

    const cleanup = () => {
      settled = true;
      if (timer !== undefined) clock.clearTimer(timer);
      timer = undefined;
      unsubscribe();
      signal?.removeEventListener('abort', onAbort);
    };

    const apply = (out: SlacOutput) => {
      if (settled) return;
      for (const frame of out.send) {
        // Frames leave in order; a send failure ends the run with a typed error.
        sending = sending.then(() => link.send(frame)).catch((err: unknown) => {
          if (!settled) apply(engineFailure(err));
        });
      }
      for (const ev of out.events) {
        logEvent(log, ev);
        options.onEvent?.(ev);
      }
      if (timer !== undefined) clock.clearTimer(timer);
      timer = undefined;
      if (out.error) {
        cleanup();
        log.error({ code: out.error.code, evses: out.error.details.evses }, `matching process failed: ${out.error.message}`);
        // Let queued frames (e.g. the last RSP) leave before the caller closes the link.
        void sending.then(() => reject(out.error));
        return;
      }
      if (out.result) {
        cleanup();
        const r = out.result;
        log.info({ evse: r.evseMac, nid: toHex(r.nid), ms: Math.round(r.timings.total ?? 0), evses: r.evses.length, linkUp: r.link.proof }, 'matching process successful');
        void sending.then(() => resolve(r));
        return;
      }
      if (out.deadline !== undefined) {
        const due = out.deadline;
        timer = clock.setTimer(() => {
          timer = undefined;
          apply(engine.step({ kind: 'timer', now: clock.now() }));
        }, due - clock.now());
      }
    };

    const engineFailure = (err: unknown): SlacOutput => {
      const out = engine.step({ kind: 'abort', now: clock.now(), reason: 'link send failed' });
      const e = new SlacError('SLAC_LINK_FAILED', `cannot send on ${link.name}: ${(err as Error)?.message ?? String(err)}`, { link: link.name }, { cause: err });
      return { ...out, error: e };
    };

    const unsubscribe = link.onFrame((bytes) => apply(engine.step({ kind: 'frame', now: clock.now(), bytes })));
    const onAbort = () => apply(engine.step({ kind: 'abort', now: clock.now(), reason: String(signal?.reason ?? 'aborted') }));
    if (signal?.aborted) {
      cleanup();
      reject(new SlacError('SLAC_ABORTED', 'SLAC aborted before start', {}));
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    log.info({ link: link.name, mac: macText(link.mac) }, 'starting SLAC (EV side)');
    apply(engine.step({ kind: 'start', now: clock.now() }));
  });
}

function macText(mac: Uint8Array): string {
  return Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join(':');
}

/** One bench-log line per event. */
function logEvent(log: Logger, ev: SlacEvent): void {
  switch (ev.type) {
    case 'transition':
      log.info({ from: ev.from, to: ev.to }, `${ev.to}: ${ev.why}`);
      break;
    case 'sent':
      log.debug({ to: ev.dst, ...ev.detail }, `sent ${ev.message}`);
      break;
    case 'received':
      log.info({ from: ev.src, ...ev.detail }, `received ${ev.message}`);
      break;
    case 'dropped':
      log.debug({ from: ev.src, type: ev.message, code: ev.code }, `dropped frame: ${ev.reason}`);
      break;
    case 'evse': {
      const o = ev.observation;
      const what = o.chosen ? 'chosen' : o.rejected ? `not chosen: ${o.rejected}` : 'seen';
      log.info({ evse: o.mac, averageAttenuationDb: o.averageAttenuationDb, soundsReceived: o.soundsReceived }, `EVSE ${o.mac} ${what}`);
      break;
    }
    case 'retry':
      log.warn({ attempt: ev.attempt, of: ev.of }, `retrying ${ev.message}`);
      break;
    case 'linkUp': {
      const r = ev.report;
      log.info({
        cp: 'SLAC_LINK_UP', proof: r.proof, afterKeySetMs: Math.round(r.afterKeySetMs), evse: ev.evse, nid: ev.nid, modem: r.modemMac,
        hostActions: r.hostActions, nwInfoPolls: r.nwInfoPolls, ...(r.evseBridged !== undefined ? { evseBridged: r.evseBridged } : {}),
      }, `PLC link up (${r.proof}) ${Math.round(r.afterKeySetMs)} ms after CM_SET_KEY`);
      break;
    }
  }
}

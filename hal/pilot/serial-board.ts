import { SerialPort } from 'serialport';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { PilotBoard, PilotReading, PilotState } from './types.ts';

/**
 * The bench pilot board over a serial line (protocol: hal/pilot/README.md). The board measures CP (state A…F and
 * the charger's PWM duty) and switches S2; we only read events and send S2 commands.
 *
 *   board → host   `CP <A-F> <duty>`      on every change, and as the answer to `?`
 *                  `OK <command>` / `ERR <reason>`
 *                  `HELLO <text>`         after the board's reset (we ask `?` again: its state may have changed)
 *   host → board   `?`                    report the current CP line
 *                  `S2 1` / `S2 0`        close / open S2 (state B ↔ C); answered with `OK S2 1` / `ERR …`
 *
 * Hostile or noisy input never throws: malformed lines are counted and dropped, an over-long line is discarded up
 * to its newline (bounded buffer).
 */
export const PILOT_LINE_MAX = 64;
/** How long the board may take to acknowledge a command. */
export const PILOT_ACK_TIMEOUT_MS = 1_000;
/** How long `open` waits for the first `CP` line (answer to `?`). */
export const PILOT_FIRST_READING_TIMEOUT_MS = 2_000;

export type PilotErrorCode = 'PILOT_OPEN_FAILED' | 'PILOT_NO_READING' | 'PILOT_NO_ACK' | 'PILOT_REFUSED' | 'PILOT_CLOSED';

export type PilotLine =
  | { kind: 'cp'; reading: PilotReading }
  | { kind: 'ok'; command: string }
  | { kind: 'err'; reason: string }
  | { kind: 'hello'; text: string }
  | { kind: 'invalid'; line: string; why: string };

const STATES = new Set<PilotState>(['A', 'B', 'C', 'D', 'E', 'F']);

/** Decodes one line (without its newline). Pure; never throws. */
export function parsePilotLine(raw: string): PilotLine {
  const line = raw.replace(/\r$/, '').trim();
  const [head, ...rest] = line.split(/\s+/);
  switch (head) {
    case 'CP': {
      if (rest.length !== 2) return { kind: 'invalid', line, why: 'CP needs a state and a duty' };
      const state = rest[0] as PilotState;
      if (!STATES.has(state)) return { kind: 'invalid', line, why: `unknown CP state ${rest[0]}` };
      if (!/^\d{1,3}(\.\d)?$/.test(rest[1]!)) return { kind: 'invalid', line, why: `malformed duty ${rest[1]}` };
      const duty = Number(rest[1]);
      if (duty > 100) return { kind: 'invalid', line, why: `duty ${duty} % out of range` };
      return { kind: 'cp', reading: { state, dutyPercent: duty } };
    }
    case 'OK':
      return { kind: 'ok', command: rest.join(' ') };
    case 'ERR':
      return { kind: 'err', reason: rest.join(' ') };
    case 'HELLO':
      return { kind: 'hello', text: rest.join(' ') };
    default:
      return { kind: 'invalid', line, why: 'unknown line' };
  }
}

/** Splits a byte stream into lines, bounded: a line longer than PILOT_LINE_MAX (without `\r\n`) is dropped up to its newline. */
export class PilotLineSplitter {
  private buf = '';
  private discarding = false;
  overlong = 0;
  push(chunk: string, onLine: (line: string) => void): void {
    for (const ch of chunk) {
      if (ch === '\n') {
        if (!this.discarding && this.buf.length) onLine(this.buf);
        this.buf = '';
        this.discarding = false;
      } else if (!this.discarding) {
        this.buf += ch;
        // The limit is on the line's content: a `\r` before the `\n` is not part of it (README: it is ignored).
        if (this.buf.length > PILOT_LINE_MAX + (ch === '\r' ? 1 : 0)) {
          this.overlong++;
          this.buf = '';
          this.discarding = true;
        }
      }
    }
  }
}

export interface SerialPilotOptions {
  path: string;
  baudRate?: number;
  log: Logger;
  ackTimeoutMs?: number;
  firstReadingTimeoutMs?: number;
}

export class SerialPilotBoard implements PilotBoard {
  readonly name: string;
  private reading: PilotReading = { state: 'A', dutyPercent: 0 };
  private readonly listeners = new Set<(r: PilotReading) => void>();
  private readonly splitter = new PilotLineSplitter();
  private pendingAck: { command: string; resolve: () => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | undefined;
  private ackChain: Promise<unknown> = Promise.resolve();
  private closed = false;
  private firstReading: (() => void) | undefined;
  private readonly lostListeners = new Set<(err: EvccError) => void>();
  /** Lines that did not decode (noise on the line, firmware mismatch). */
  invalidLines = 0;

  private constructor(private readonly port: SerialPort, private readonly o: SerialPilotOptions) {
    this.name = `serial-pilot:${o.path}`;
    port.on('data', (d: Buffer) => this.splitter.push(d.toString('latin1'), (l) => this.onLine(l)));
    port.on('close', () => this.onClosed());
    port.on('error', (err: Error) => o.log.error({ path: o.path, error: err.message }, 'pilot board serial error'));
  }

  /** Opens the port and asks for the current state; resolves once the board has answered with a `CP` line. */
  static async open(o: SerialPilotOptions): Promise<SerialPilotBoard> {
    const port = await new Promise<SerialPort>((resolve, reject) => {
      const p = new SerialPort({ path: o.path, baudRate: o.baudRate ?? 115200, autoOpen: false });
      p.open((err) => (err ? reject(err) : resolve(p)));
    }).catch((err: unknown) => {
      throw new EvccError<PilotErrorCode>('PILOT_OPEN_FAILED', `cannot open pilot board ${o.path}: ${(err as Error).message}`, { path: o.path }, { cause: err });
    });
    const board = new SerialPilotBoard(port, o);
    try {
      await board.requestReading(o.firstReadingTimeoutMs ?? PILOT_FIRST_READING_TIMEOUT_MS);
    } catch (err) {
      await board.close();
      throw err;
    }
    o.log.info({ path: o.path, state: board.reading.state, duty: board.reading.dutyPercent }, `pilot board on ${o.path}: state ${board.reading.state}, ${board.reading.dutyPercent} % duty`);
    return board;
  }

  read(): PilotReading {
    return { ...this.reading };
  }

  onChange(listener: (r: PilotReading) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Called once if the serial line closes under us (board unplugged, USB reset): the pilot state is unknown then. */
  onLost(listener: (err: EvccError) => void): () => void {
    this.lostListeners.add(listener);
    return () => this.lostListeners.delete(listener);
  }

  /** S2 closed = state C (ready to draw power), open = state B. Resolves on the board's `OK`. */
  setChargeRequest(closed: boolean): Promise<void> {
    return this.command(`S2 ${closed ? 1 : 0}`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    this.lostListeners.clear();
    this.failPending(new EvccError<PilotErrorCode>('PILOT_CLOSED', 'pilot board closed'));
    if (this.port.isOpen) await new Promise<void>((r) => this.port.close(() => r()));
  }

  private requestReading(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.firstReading = undefined;
        reject(new EvccError<PilotErrorCode>('PILOT_NO_READING', `pilot board on ${this.o.path} sent no CP line within ${timeoutMs} ms`, { path: this.o.path }));
      }, timeoutMs);
      this.firstReading = () => {
        clearTimeout(timer);
        resolve();
      };
      this.port.write('?\n');
    });
  }

  private command(command: string): Promise<void> {
    const run = () => new Promise<void>((resolve, reject) => {
      if (this.closed) return reject(new EvccError<PilotErrorCode>('PILOT_CLOSED', 'pilot board closed'));
      const ms = this.o.ackTimeoutMs ?? PILOT_ACK_TIMEOUT_MS;
      const timer = setTimeout(() => {
        this.pendingAck = undefined;
        reject(new EvccError<PilotErrorCode>('PILOT_NO_ACK', `pilot board did not acknowledge "${command}" within ${ms} ms`, { command }));
      }, ms);
      this.pendingAck = { command, resolve, reject, timer };
      this.port.write(`${command}\n`);
    });
    // One command in flight at a time: acknowledgements carry no id.
    const next = this.ackChain.then(run, run);
    this.ackChain = next.catch(() => undefined);
    return next;
  }

  private onLine(raw: string): void {
    const line = parsePilotLine(raw);
    const log = this.o.log;
    switch (line.kind) {
      case 'cp': {
        const r = line.reading;
        const changed = r.state !== this.reading.state || r.dutyPercent !== this.reading.dutyPercent;
        this.reading = r;
        this.firstReading?.();
        this.firstReading = undefined;
        if (changed) {
          log.info({ state: r.state, duty: r.dutyPercent }, `CP state ${r.state}, ${r.dutyPercent} % duty`);
          for (const l of [...this.listeners]) l({ ...r });
        }
        return;
      }
      case 'ok':
      case 'err': {
        const p = this.pendingAck;
        if (!p) {
          log.debug({ line: raw }, 'pilot board: acknowledgement without a command');
          return;
        }
        if (line.kind === 'ok' && line.command !== p.command) {
          log.debug({ line: raw, expected: p.command }, 'pilot board: acknowledgement of another command');
          return;
        }
        clearTimeout(p.timer);
        this.pendingAck = undefined;
        if (line.kind === 'ok') p.resolve();
        else p.reject(new EvccError<PilotErrorCode>('PILOT_REFUSED', `pilot board refused "${p.command}": ${line.reason}`, { command: p.command, reason: line.reason }));
        return;
      }
      case 'hello':
        // The board restarted: its S2 is open again and CP may have changed; ask for the state.
        log.warn({ text: line.text }, 'pilot board restarted');
        this.port.write('?\n');
        return;
      case 'invalid':
        this.invalidLines++;
        log.debug({ line: line.line, why: line.why }, 'pilot board: line ignored');
        return;
    }
  }

  private onClosed(): void {
    if (this.closed) return;
    this.o.log.error({ path: this.o.path }, 'pilot board serial line closed');
    const err = new EvccError<PilotErrorCode>('PILOT_CLOSED', `pilot board serial line ${this.o.path} closed`, { path: this.o.path });
    this.failPending(err);
    for (const l of [...this.lostListeners]) l(err);
    this.lostListeners.clear();
  }

  private failPending(err: Error): void {
    const p = this.pendingAck;
    if (!p) return;
    clearTimeout(p.timer);
    this.pendingAck = undefined;
    p.reject(err);
  }
}

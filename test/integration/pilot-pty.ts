import { closeSync, writeSync } from 'node:fs';
import { ReadStream } from 'node:tty';
import { openPty } from '../support/pty.ts';

/**
 * The bench pilot board's side of the `evcc-pilot/1` line protocol (hal/pilot/README.md) on the master end of a
 * pseudo-terminal, for tests of SerialPilotBoard and `evcc run --pilot`. Answers `?` with the current CP line and
 * `S2 1|0` with `OK` (or `ERR` in state A); `plugIn`/`unplug`/`send` script the vehicle side of the bench.
 */
export class PtyPilotBoard {
  readonly path: string;
  /** Every line the host sent. */
  readonly received: string[] = [];
  state: 'A' | 'B' | 'C' | 'D' | 'E' | 'F' = 'A';
  duty = 0;
  s2 = false;
  /** When false the board stops answering commands (PILOT_NO_ACK). */
  answering = true;
  private readonly master: number;
  private readonly slave: number;
  private readonly input: ReadStream;
  private buf = '';

  constructor() {
    const { master, slave, path: pty } = openPty();
    this.master = master;
    this.slave = slave; // kept open for the whole test: else the master reads EIO (PLATFORM.md)
    this.path = pty;
    this.input = new ReadStream(master);
    this.input.on('data', (d: Buffer) => {
      this.buf += d.toString('latin1');
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i).replace(/\r$/, '');
        this.buf = this.buf.slice(i + 1);
        this.onHostLine(line);
      }
    });
    this.input.on('error', () => undefined);
  }

  send(line: string): void {
    writeSync(this.master, `${line}\n`);
  }

  cpLine(): string {
    return `CP ${this.state} ${this.duty.toFixed(1)}`;
  }

  plugIn(duty = 5): void {
    this.state = this.s2 ? 'C' : 'B';
    this.duty = duty;
    this.send(this.cpLine());
  }

  unplug(): void {
    this.state = 'A';
    this.duty = 0;
    this.s2 = false;
    this.send(this.cpLine());
  }

  private onHostLine(line: string): void {
    this.received.push(line);
    if (!this.answering) return;
    if (line === '?') return this.send(this.cpLine());
    const m = /^S2 ([01])$/.exec(line);
    if (m) {
      if (this.state === 'A') return this.send('ERR S2 state A');
      this.s2 = m[1] === '1';
      this.send(`OK ${line}`);
      this.state = this.s2 ? 'C' : 'B';
      return this.send(this.cpLine());
    }
    this.send('ERR unknown command');
  }

  /** The board disappears (USB unplugged): the master end closes, the host's reads fail. */
  hangUp(): void {
    this.input.destroy();
    try {
      closeSync(this.slave);
    } catch {
      // already closed
    }
  }

  close(): void {
    this.input.destroy();
    try {
      closeSync(this.slave);
    } catch {
      // already closed
    }
  }
}

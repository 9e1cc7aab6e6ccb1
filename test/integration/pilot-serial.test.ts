import fc from 'fast-check';
import { afterEach, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.ts';
import { parsePilotLine, PilotLineSplitter, PILOT_LINE_MAX, SerialPilotBoard } from '../../hal/pilot/serial-board.ts';
import { requestsHighLevelCommunication, type PilotReading } from '../../hal/pilot/types.ts';
import { describeWith } from '../support/prereq.ts';
import { PtyPilotBoard } from './pilot-pty.ts';
import { ptyAvailable } from '../support/pty.ts';
import { until } from '../support/until.ts';

/** SerialPilotBoard (serialport) against the bench board's protocol on a pseudo-terminal (hal/pilot/README.md). */
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

it('decodes the protocol lines and refuses malformed ones without throwing', () => {
  expect(parsePilotLine('CP B 5.0')).toEqual({ kind: 'cp', reading: { state: 'B', dutyPercent: 5 } });
  expect(parsePilotLine('CP C 5\r')).toEqual({ kind: 'cp', reading: { state: 'C', dutyPercent: 5 } });
  expect(parsePilotLine('CP A 0')).toEqual({ kind: 'cp', reading: { state: 'A', dutyPercent: 0 } });
  expect(parsePilotLine('OK S2 1')).toEqual({ kind: 'ok', command: 'S2 1' });
  expect(parsePilotLine('ERR S2 state A')).toEqual({ kind: 'err', reason: 'S2 state A' });
  for (const bad of ['CP G 5.0', 'CP B', 'CP B 101', 'CP B -1', 'CP B 5.00', 'CP B 0x5', 'CP B 5 extra', 'cp b 5', '']) {
    expect(parsePilotLine(bad).kind, bad).toBe('invalid');
  }
  fc.assert(fc.property(fc.string({ maxLength: 80 }), (s) => {
    const r = parsePilotLine(s);
    if (r.kind === 'cp') expect(r.reading.dutyPercent).toBeLessThanOrEqual(100);
  }));
});

it('splits lines, dropping an over-long line up to its newline', () => {
  const s = new PilotLineSplitter();
  const out: string[] = [];
  s.push('CP B 5', (l) => out.push(l));
  s.push(`.0\n${'x'.repeat(PILOT_LINE_MAX + 10)}`, (l) => out.push(l));
  s.push('yyy\nCP A 0\n', (l) => out.push(l));
  expect(out).toEqual(['CP B 5.0', 'CP A 0']);
  expect(s.overlong).toBe(1);
});

describeWith([ptyAvailable])('SerialPilotBoard on a pty', () => {
  it('reads the state at open, reports plug-in with 5 % duty and unplug, switches S2', async () => {
    const board = new PtyPilotBoard();
    cleanups.push(() => board.close());
    const pilot = await SerialPilotBoard.open({ path: board.path, log: silentLogger() });
    cleanups.push(() => pilot.close());
    expect(board.received[0]).toBe('?');
    expect(pilot.read()).toEqual({ state: 'A', dutyPercent: 0 });

    const seen: PilotReading[] = [];
    pilot.onChange((r) => seen.push(r));
    board.plugIn(100);
    board.plugIn(5);
    await until(() => seen.length === 2, 3_000, 'two CP changes');
    expect(seen).toEqual([{ state: 'B', dutyPercent: 100 }, { state: 'B', dutyPercent: 5 }]);
    expect(requestsHighLevelCommunication(seen[1]!)).toBe(true);

    await pilot.setChargeRequest(true);
    expect(board.received).toContain('S2 1');
    await until(() => pilot.read().state === 'C', 3_000, 'state C');

    // Noise on the line: ignored and counted, state untouched; a repeated CP line is no change.
    board.send('CP Z 5.0');
    board.send('garbage');
    board.send(pilot.read().state === 'C' ? 'CP C 5.0' : 'CP B 5.0');
    board.unplug();
    await until(() => pilot.read().state === 'A', 3_000, 'state A');
    expect(pilot.invalidLines).toBe(2);
    expect(seen.map((r) => r.state)).toEqual(['B', 'B', 'C', 'A']);
  });

  it('typed errors: refused command, missing acknowledgement, no board', async () => {
    const board = new PtyPilotBoard();
    cleanups.push(() => board.close());
    const pilot = await SerialPilotBoard.open({ path: board.path, log: silentLogger(), ackTimeoutMs: 200 });
    cleanups.push(() => pilot.close());
    await expect(pilot.setChargeRequest(true)).rejects.toMatchObject({ code: 'PILOT_REFUSED' }); // state A
    board.answering = false;
    board.plugIn(5);
    await expect(pilot.setChargeRequest(true)).rejects.toMatchObject({ code: 'PILOT_NO_ACK' });

    const silent = new PtyPilotBoard();
    silent.answering = false;
    cleanups.push(() => silent.close());
    await expect(SerialPilotBoard.open({ path: silent.path, log: silentLogger(), firstReadingTimeoutMs: 200 })).rejects.toMatchObject({ code: 'PILOT_NO_READING' });
    await expect(SerialPilotBoard.open({ path: '/dev/evcc-no-such-tty', log: silentLogger() })).rejects.toMatchObject({ code: 'PILOT_OPEN_FAILED' });
  });

  it('asks for the state again after the board restarted (HELLO)', async () => {
    const board = new PtyPilotBoard();
    cleanups.push(() => board.close());
    const pilot = await SerialPilotBoard.open({ path: board.path, log: silentLogger() });
    cleanups.push(() => pilot.close());
    board.state = 'B';
    board.duty = 5;
    board.send('HELLO evcc-pilot/1 fw 0.3');
    await until(() => pilot.read().state === 'B', 3_000, 'state after restart');
    expect(board.received.filter((l) => l === '?')).toHaveLength(2);
  });

  it('reports a lost serial line (board unplugged) as PILOT_CLOSED', async () => {
    const board = new PtyPilotBoard();
    cleanups.push(() => board.close());
    const pilot = await SerialPilotBoard.open({ path: board.path, log: silentLogger() });
    cleanups.push(() => pilot.close());
    const lost: { code: string }[] = [];
    pilot.onLost((e) => lost.push(e));
    // Let serialport's reader settle after the open handshake (a hang-up right inside it goes unseen on a pty).
    await new Promise((r) => setTimeout(r, 200));
    board.hangUp();
    await until(() => lost.length === 1, 3_000, 'line loss');
    expect(lost[0]!.code).toBe('PILOT_CLOSED');
  });
});

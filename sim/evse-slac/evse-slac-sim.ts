import type { Logger } from '../../core/logger.ts';
import { ATTEN_GROUPS, BROADCAST_MAC, SLAC_TIMING as T } from '../../firmware/slac/constants.ts';
import {
  ASSOC, decodeFrame, encodeFrame, fromHex, macToString, sameBytes, toHex, type Mac, type SlacMessage,
} from '../../firmware/slac/codec.ts';
import type { Clock, TimerId } from '../../hal/clock/types.ts';
import type { PlcLink } from '../../hal/plc/types.ts';

/**
 * Our own charger-side SLAC peer (EVSE host), for multi-charger and fault scenarios Debian's `evse` cannot play.
 * It answers CM_SLAC_PARM.REQ, averages the CM_ATTEN_PROFILE.IND its modem sends for the PEV's sounds into
 * CM_ATTEN_CHAR.IND (repeated until CM_ATTEN_CHAR.RSP), and answers CM_SLAC_MATCH.REQ with its NID/NMK.
 * Faults are declared behaviours, one per field scenario.
 */
export type EvseFault =
  | 'noParmCnf'        // never answers CM_SLAC_PARM.REQ
  | 'noAttenCharInd'   // answers PARM but never reports attenuation
  | 'noMatchCnf'       // never answers CM_SLAC_MATCH.REQ
  | 'foreignRunId'     // answers with a RunID that is not the PEV's (must be ignored)
  | 'garbage';         // sprinkles malformed and unknown frames around every answer

export interface EvseSlacSimOptions {
  nid?: string; // 7 bytes hex
  nmk?: string; // 16 bytes hex
  /** 17-byte EVSE id (ASCII). */
  evseId?: string;
  numSounds?: number;
  /** TIME_OUT in 100 ms units. */
  timeOut?: number;
  faults?: EvseFault[];
  log?: Logger;
}

interface Session {
  pev: Mac;
  runId: Uint8Array;
  sums: number[];
  profiles: number;
  expected: number;
  soundTimer?: TimerId;
  rspTimer?: TimerId;
  indRepeats: number;
  reported: boolean;
  sessionTimer?: TimerId;
}

export class EvseSlacSim {
  readonly nid: Uint8Array;
  readonly nmk: Uint8Array;
  private readonly evseId = new Uint8Array(17);
  private session: Session | undefined;
  private readonly faults: Set<EvseFault>;
  private unsubscribe: () => void;
  /** Completed matches (PEV MACs), for tests. */
  readonly matched: string[] = [];

  constructor(private readonly link: PlcLink, private readonly clock: Clock, private readonly options: EvseSlacSimOptions = {}) {
    this.nid = fromHex(options.nid ?? '026bcba5354e08', 7);
    this.nmk = fromHex(options.nmk ?? 'b59319d7e8157ba001b018669ccee30d', 16);
    this.evseId.set(new TextEncoder().encode(options.evseId ?? 'SIM-EVSE').subarray(0, 17));
    this.faults = new Set(options.faults ?? []);
    this.unsubscribe = link.onFrame((f) => this.onFrame(f));
  }

  get mac(): string {
    return macToString(this.link.mac);
  }

  private send(dst: Mac, message: SlacMessage): void {
    if (this.faults.has('garbage')) {
      // A truncated copy of what follows, an unknown MMTYPE and a non-HomePlug frame.
      const good = encodeFrame({ dst, src: this.link.mac, message });
      void this.link.send(good.subarray(0, 21)).catch(() => undefined);
      const unknown = Uint8Array.from(good);
      unknown[15] = 0xa0; unknown[16] = 0x00; // vendor-specific MME
      void this.link.send(unknown).catch(() => undefined);
      const other = Uint8Array.from(good);
      other[12] = 0x08; other[13] = 0x00;
      void this.link.send(other).catch(() => undefined);
    }
    void this.link.send(encodeFrame({ dst, src: this.link.mac, message })).catch(() => undefined);
  }

  private runIdFor(s: Session): Uint8Array {
    if (!this.faults.has('foreignRunId')) return s.runId;
    return s.runId.map((b) => b ^ 0xff);
  }

  private onFrame(bytes: Uint8Array): void {
    const r = decodeFrame(bytes);
    if (!r.ok) return;
    const { dst, src, message } = r.frame;
    const forUs = sameBytes(dst, this.link.mac) || sameBytes(dst, BROADCAST_MAC);
    if (!forUs || sameBytes(src, this.link.mac)) return;
    const s = this.session;
    switch (message.type) {
      case 'CM_SLAC_PARM.REQ': {
        if (s && !sameBytes(s.runId, message.runId)) this.reset();
        const cur = this.session ?? this.begin(src, message.runId);
        this.options.log?.info({ evse: this.mac, pev: macToString(src), runId: toHex(message.runId) }, 'CM_SLAC_PARM.REQ');
        if (this.faults.has('noParmCnf')) return;
        this.send(src, {
          type: 'CM_SLAC_PARM.CNF', msoundTarget: BROADCAST_MAC, numSounds: cur.expected, timeOut: this.options.timeOut ?? 6,
          respType: 0, forwardingSta: src, ...ASSOC, runId: this.runIdFor(cur),
        });
        return;
      }
      case 'CM_START_ATTEN_CHAR.IND':
        if (!s || !sameBytes(s.runId, message.runId) || s.soundTimer !== undefined || s.reported) return;
        // TT_EVSE_match_MNBC: report whatever arrived when the sounding window closes.
        s.soundTimer = this.clock.setTimer(() => this.report(), (message.timeOut || 6) * 100);
        return;
      case 'CM_ATTEN_PROFILE.IND':
        if (!s || !sameBytes(message.pevMac, s.pev) || s.reported) return;
        for (let i = 0; i < Math.min(ATTEN_GROUPS, message.groups.length); i++) s.sums[i]! += message.groups[i]!;
        s.profiles++;
        if (s.profiles >= s.expected) this.report();
        return;
      case 'CM_ATTEN_CHAR.RSP':
        if (!s || !sameBytes(s.runId, message.runId)) return;
        if (s.rspTimer !== undefined) this.clock.clearTimer(s.rspTimer);
        s.rspTimer = undefined;
        return;
      case 'CM_SLAC_MATCH.REQ':
        if (!s || !sameBytes(s.runId, message.runId) || !sameBytes(dst, this.link.mac)) return;
        this.options.log?.info({ evse: this.mac, pev: macToString(src) }, 'CM_SLAC_MATCH.REQ');
        if (this.faults.has('noMatchCnf')) return;
        this.send(src, {
          type: 'CM_SLAC_MATCH.CNF', ...ASSOC, pevId: message.pevId, pevMac: message.pevMac, evseId: this.evseId,
          evseMac: this.link.mac, runId: this.runIdFor(s), nid: this.nid, nmk: this.nmk,
        });
        this.matched.push(macToString(src));
        return;
      default:
        return;
    }
  }

  private begin(pev: Mac, runId: Uint8Array): Session {
    const s: Session = {
      pev, runId, sums: new Array<number>(ATTEN_GROUPS).fill(0), profiles: 0, expected: this.options.numSounds ?? T.C_EV_match_MNBC.value,
      indRepeats: 0, reported: false,
    };
    s.sessionTimer = this.clock.setTimer(() => this.reset(), T.TT_EVSE_match_session.value);
    this.session = s;
    return s;
  }

  private report(): void {
    const s = this.session;
    if (!s || s.reported) return;
    s.reported = true;
    if (s.soundTimer !== undefined) this.clock.clearTimer(s.soundTimer);
    s.soundTimer = undefined;
    if (this.faults.has('noAttenCharInd')) return;
    const n = Math.max(1, s.profiles);
    const groups = Uint8Array.from(s.sums, (v) => Math.min(255, Math.round(v / n)));
    const sourceId = new Uint8Array(17);
    const ind: SlacMessage = {
      type: 'CM_ATTEN_CHAR.IND', ...ASSOC, sourceAddress: s.pev, runId: this.runIdFor(s), sourceId, respId: this.evseId,
      numSounds: s.profiles, groups,
    };
    this.options.log?.info({ evse: this.mac, sounds: s.profiles, average: groups.reduce((a, b) => a + b, 0) / groups.length }, 'CM_ATTEN_CHAR.IND');
    const sendInd = () => {
      this.send(s.pev, ind);
      // Repeat until CM_ATTEN_CHAR.RSP (TT_match_response, C_EV_match_retry as the EV side uses them).
      if (s.indRepeats++ < T.C_EV_match_retry.value) s.rspTimer = this.clock.setTimer(sendInd, T.TT_match_response.value);
      else s.rspTimer = undefined;
    };
    sendInd();
  }

  private reset(): void {
    const s = this.session;
    if (!s) return;
    for (const t of [s.soundTimer, s.rspTimer, s.sessionTimer]) if (t !== undefined) this.clock.clearTimer(t);
    this.session = undefined;
  }

  async close(): Promise<void> {
    this.reset();
    this.unsubscribe();
  }
}

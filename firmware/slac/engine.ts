import { BROADCAST_MAC, SET_KEY } from './constants.ts';
import { decodeQcaFrame, encodeQcaFrame, isVendorMme, type QcaMessage, type QcaMessageOf, type QcaMessageType } from './qca-vendor.ts';
import {
  ASSOC, decodeFrame, encodeFrame, macFromString, macToString, sameBytes, toHex,
  type Mac, type MessageOf, type SlacFrame, type SlacMessage, type SlacMessageType,
} from './codec.ts';
import { SlacError, type SlacErrorCode } from './errors.ts';
import type { SlacSettings } from './settings.ts';

/**
 * The EV side of ISO 15118-3 SLAC as a pure state machine: inputs are frames, timer expiries and commands, each
 * with the current time; outputs are frames to send, events, and the next deadline. No socket, no clock, no
 * randomness of its own (RunID and random fields come from the context), so a whole matching runs in virtual time.
 *
 * States are named after what the EV awaits:
 *   Idle → WaitForParmCnf → Sounding → WaitForAttenCharInd → WaitForMatchCnf → WaitForSetKeyCnf
 *        → WaitForHostActionInd | WaitForNwInfoCnf (the modem's join into the charger's AVLN, within TT_match_join)
 *        → Matched | Failed
 * After CM_SET_KEY.CNF (settings.linkUp): WaitForHostActionInd waits for the QCA modem's VS_HST_ACTION.IND with a
 * joined action code; WaitForNwInfoCnf polls VS_NW_INFO every nwInfoPollIntervalMs until the charger's NID has a
 * member station, and also takes the indication in the default mode; `immediate` goes straight to Matched.
 */
export type SlacStateName =
  | 'Idle' | 'WaitForParmCnf' | 'Sounding' | 'WaitForAttenCharInd' | 'WaitForMatchCnf' | 'WaitForSetKeyCnf'
  | 'WaitForHostActionInd' | 'WaitForNwInfoCnf' | 'Matched' | 'Failed';

/** What proved the link up after CM_SET_KEY. */
export type LinkUpProof = 'immediate' | 'VS_HST_ACTION.IND' | 'VS_NW_INFO.CNF';

export interface LinkUpReport {
  proof: LinkUpProof;
  /** Milliseconds from CM_SET_KEY.CNF to the proof. */
  afterKeySetMs: number;
  /** The modem that confirmed CM_SET_KEY (the only station whose vendor MMEs count). */
  modemMac: string;
  /** VS_HST_ACTION.IND action codes received after the key was set, in order. */
  hostActions: number[];
  nwInfoPolls: number;
  /** The charger's host appears as the bridged address of a station in our AVLN (VS_NW_INFO proof only). */
  evseBridged?: boolean;
}

export interface EvseObservation {
  mac: string;
  /** Answered our CM_SLAC_PARM.REQ. */
  parmCnf: boolean;
  /** Average of the attenuation groups it reported (dB); absent when it never sent CM_ATTEN_CHAR.IND. */
  averageAttenuationDb?: number;
  groups?: number[];
  /** NUM_SOUNDS it says it received. */
  soundsReceived?: number;
  /** Selected for matching. */
  chosen: boolean;
  /** Why it was not chosen, when it reported. */
  rejected?: string;
}

export interface SlacTimings {
  /** Milliseconds from start. */
  firstParmCnf?: number;
  soundingDone?: number;
  decided?: number;
  matchCnf?: number;
  keySet?: number;
  /** When the modem's join was proven (or the key confirmed, with linkUp immediate). */
  linkReady?: number;
  total?: number;
}

export interface SlacResult {
  evseMac: string;
  nid: Uint8Array;
  nmk: Uint8Array;
  runId: Uint8Array;
  /** Every charger seen in this run, with its measurement (spoofed attenuation is a known attack: CVE-2025-12357). */
  evses: EvseObservation[];
  timings: SlacTimings;
  /** Retries used. */
  retries: { parmReq: number; matchReq: number; setKey: number };
  /** How the link was found up after CM_SET_KEY. */
  link: LinkUpReport;
}

export type SlacEvent =
  | { type: 'transition'; from: SlacStateName; to: SlacStateName; why: string }
  | { type: 'sent'; message: SlacMessageType | QcaMessageType; dst: string; detail?: Record<string, unknown> }
  | { type: 'received'; message: SlacMessageType | QcaMessageType; src: string; detail?: Record<string, unknown> }
  | { type: 'dropped'; reason: string; code?: string; message?: SlacMessageType | QcaMessageType; src?: string }
  | { type: 'linkUp'; report: LinkUpReport; evse: string; nid: string }
  | { type: 'evse'; observation: EvseObservation }
  | { type: 'retry'; message: SlacMessageType; attempt: number; of: number };

export type SlacInput =
  | { kind: 'start'; now: number }
  | { kind: 'frame'; now: number; bytes: Uint8Array }
  | { kind: 'timer'; now: number }
  | { kind: 'abort'; now: number; reason: string };

export interface SlacOutput {
  send: Uint8Array[];
  events: SlacEvent[];
  /** Absolute time (same base as `now`) at which to feed a `timer` input; undefined = none armed. */
  deadline?: number;
  state: SlacStateName;
  result?: SlacResult;
  error?: SlacError;
}

export interface SlacContext {
  /** Our own MAC (the modem host interface). */
  mac: Mac;
  settings: SlacSettings;
  /** 8 random bytes, fresh per matching attempt. */
  runId: Uint8Array;
  /** Source of random bytes (sound RND, SET_KEY nonce). */
  random(n: number): Uint8Array;
}

interface EvseRecord {
  mac: Mac;
  key: string;
  parmCnf: boolean;
  atten?: MessageOf<'CM_ATTEN_CHAR.IND'>;
  average?: number;
  order: number;
  chosen: boolean;
  rejected?: string;
}

export class SlacEngine {
  private state: SlacStateName = 'Idle';
  private deadline: number | undefined;
  private startedAt = 0;
  private attempt = 0;
  private sendIndex = 0;
  private attenDeadline = 0;
  private readonly evses = new Map<string, EvseRecord>();
  private chosen: EvseRecord | undefined;
  private match: MessageOf<'CM_SLAC_MATCH.CNF'> | undefined;
  private setKeyNonce = 0;
  /** The station that confirmed CM_SET_KEY: our modem. Vendor MMEs from anyone else are dropped. */
  private modem: Mac | undefined;
  private keySetAt = 0;
  private joinDeadline = 0;
  private readonly hostActions: number[] = [];
  private nwInfoPolls = 0;
  private nwInfoCnfs = 0;
  private lastNwInfo: string | undefined;
  private readonly timings: SlacTimings = {};
  private readonly retries = { parmReq: 0, matchReq: 0, setKey: 0 };
  private readonly pevId: Uint8Array;
  private readonly localModem: Mac;
  private out: SlacOutput = { send: [], events: [], state: 'Idle' };

  constructor(private readonly ctx: SlacContext) {
    if (ctx.runId.length !== 8) throw new RangeError('RunID must be 8 bytes');
    this.pevId = new Uint8Array(17);
    this.pevId.set(new TextEncoder().encode(ctx.settings.pevId).subarray(0, 17));
    this.localModem = macFromString(ctx.settings.localModemMac);
  }

  get stateName(): SlacStateName {
    return this.state;
  }

  /** Feeds one input; returns what to do. Never throws on bad frames. */
  step(input: SlacInput): SlacOutput {
    this.out = { send: [], events: [], state: this.state };
    if (this.state === 'Matched' || this.state === 'Failed') {
      if (input.kind === 'frame') this.drop('session finished');
      return this.flush();
    }
    switch (input.kind) {
      case 'start':
        if (this.state === 'Idle') this.begin(input.now);
        break;
      case 'frame':
        this.onFrame(input.bytes, input.now);
        break;
      case 'timer':
        if (this.deadline !== undefined && input.now >= this.deadline) this.onDeadline(input.now);
        break;
      case 'abort':
        this.fail('SLAC_ABORTED', `SLAC aborted in ${this.state}: ${input.reason}`, input.now);
        break;
    }
    return this.flush();
  }

  /* ---------------------------------------------------------------------------------------------- phases */

  private begin(now: number): void {
    this.startedAt = now;
    this.sendParmReq();
    this.go('WaitForParmCnf', 'SLAC started: CM_SLAC_PARM.REQ broadcast', now + this.ctx.settings.parmCnfTimeoutMs);
  }

  private sendParmReq(): void {
    this.emit(BROADCAST_MAC, { type: 'CM_SLAC_PARM.REQ', ...ASSOC, runId: this.ctx.runId, cipherSuiteSetSize: 0 });
  }

  private startSounding(now: number): void {
    this.sendIndex = 0;
    const delay = this.ctx.settings.matchSequenceDelayMs;
    this.go('Sounding', 'CM_SLAC_PARM.CNF received', now + delay);
    if (delay === 0) this.soundNext(now);
  }

  /** Sends the next START_ATTEN_CHAR.IND or M-Sound, one per TP_EV_batch_msg_interval. */
  private soundNext(now: number): void {
    const s = this.ctx.settings;
    const i = this.sendIndex++;
    if (i === 0) this.attenDeadline = now + s.attenResultsTimeoutMs; // TT_EV_atten_results runs from the first START_ATTEN_CHAR.IND
    if (i < s.startAttenCharInds) {
      this.emit(BROADCAST_MAC, {
        type: 'CM_START_ATTEN_CHAR.IND', ...ASSOC, numSounds: s.sounds, timeOut: s.evseMatchMnbcTimeOut, respType: 0,
        forwardingSta: this.ctx.mac, runId: this.ctx.runId,
      });
    } else {
      const n = i - s.startAttenCharInds;
      this.emit(BROADCAST_MAC, {
        type: 'CM_MNBC_SOUND.IND', ...ASSOC, senderId: this.pevId, count: s.sounds - 1 - n, runId: this.ctx.runId,
        rnd: this.ctx.random(16),
      });
    }
    if (this.sendIndex < s.startAttenCharInds + s.sounds) {
      this.deadline = now + s.batchMsgIntervalMs;
      return;
    }
    this.timings.soundingDone = now - this.startedAt;
    this.go('WaitForAttenCharInd', `${s.startAttenCharInds} START_ATTEN_CHAR.IND and ${s.sounds} sounds sent`, Math.max(now, this.attenDeadline));
    if (this.everyAnsweringEvseReported()) this.decide(now);
  }

  private everyAnsweringEvseReported(): boolean {
    if (!this.ctx.settings.attenResultsEarlyDecision) return false;
    const answering = [...this.evses.values()].filter((e) => e.parmCnf);
    return answering.length > 0 && answering.every((e) => e.atten !== undefined);
  }

  /** Lowest average attenuation wins; anything above the threshold is rejected. */
  private decide(now: number): void {
    this.timings.decided = now - this.startedAt;
    const reported = [...this.evses.values()].filter((e) => e.atten !== undefined).sort((a, b) => a.order - b.order);
    if (reported.length === 0) {
      const answered = [...this.evses.values()].filter((e) => e.parmCnf).length;
      this.fail('SLAC_TIMEOUT_ATTEN_CHAR', `no CM_ATTEN_CHAR.IND within TT_EV_atten_results (${answered} charger(s) answered CM_SLAC_PARM.REQ)`, now);
      return;
    }
    let best: EvseRecord | undefined;
    for (const e of reported) {
      if (e.average === undefined) e.rejected = 'no attenuation groups';
      else if (e.average > this.ctx.settings.maxAverageAttenuationDb) e.rejected = `average attenuation ${e.average.toFixed(1)} dB above ${this.ctx.settings.maxAverageAttenuationDb} dB`;
      else if (!best || e.average < best.average!) best = e;
    }
    for (const e of reported) this.out.events.push({ type: 'evse', observation: this.observe(e) });
    if (!best) {
      this.fail('SLAC_NO_SUITABLE_EVSE', `no charger within the attenuation threshold (${reported.map((e) => `${e.key} ${e.average?.toFixed(1) ?? '?'} dB`).join(', ')})`, now);
      return;
    }
    best.chosen = true;
    for (const e of reported) if (e !== best && !e.rejected) e.rejected = `higher attenuation than ${best.key}`;
    this.chosen = best;
    this.attempt = 0;
    this.sendMatchReq();
    this.go('WaitForMatchCnf', `chose ${best.key} (${best.average!.toFixed(1)} dB of ${reported.length} charger(s))`, now + this.ctx.settings.matchCnfTimeoutMs);
  }

  private sendMatchReq(): void {
    const e = this.chosen!;
    this.emit(e.mac, {
      type: 'CM_SLAC_MATCH.REQ', ...ASSOC, pevId: this.pevId, pevMac: this.ctx.mac, evseId: e.atten!.respId, evseMac: e.mac,
      runId: this.ctx.runId,
    });
  }

  private sendSetKey(): void {
    const m = this.match!;
    this.emit(this.localModem, {
      type: 'CM_SET_KEY.REQ', keyType: SET_KEY.KEY_TYPE_NMK, myNonce: this.setKeyNonce, yourNonce: 0, pid: SET_KEY.PID_HLE,
      prn: 0, pmn: 0, ccoCapability: 0, nid: m.nid, newEks: SET_KEY.NEW_EKS_NMK, newKey: m.nmk,
    });
  }

  /* ------------------------------------------------------------------------------- link-up after CM_SET_KEY */

  private startLinkJoin(now: number, result: number): void {
    const s = this.ctx.settings;
    const res = `CM_SET_KEY.CNF Result 0x${result.toString(16).padStart(2, '0')}`;
    this.keySetAt = now;
    this.joinDeadline = now + s.matchJoinTimeoutMs;
    switch (s.linkUp) {
      case 'immediate':
        this.linkUp(now, 'immediate', `${res}; link taken as up at once (slac.linkUp immediate: no modem join to wait for)`);
        return;
      case 'vendor-indication':
        this.go('WaitForHostActionInd', `${res}; waiting for the modem's VS_HST_ACTION.IND (TT_match_join ${s.matchJoinTimeoutMs} ms)`, this.joinDeadline);
        return;
      case 'nw-info':
      case 'vendor-indication-or-nw-info':
        this.sendNwInfoReq();
        this.go('WaitForNwInfoCnf', `${res}; polling VS_NW_INFO every ${s.nwInfoPollIntervalMs} ms${s.linkUp === 'nw-info' ? '' : ' (or VS_HST_ACTION.IND)'} for the charger's AVLN (TT_match_join ${s.matchJoinTimeoutMs} ms)`, this.nextPoll(now));
        return;
    }
  }

  private nextPoll(now: number): number {
    return Math.min(now + this.ctx.settings.nwInfoPollIntervalMs, this.joinDeadline);
  }

  private sendNwInfoReq(): void {
    this.nwInfoPolls++;
    // MMV 1 (with FMI): the request form open-plc-utils uses for AR7400 and later chips, QCA7000 included.
    this.emitVendor(this.localModem, 1, { type: 'VS_NW_INFO.REQ' });
  }

  private linkUp(now: number, proof: LinkUpProof, why: string, evseBridged?: boolean): void {
    this.timings.linkReady = now - this.startedAt;
    this.timings.total = now - this.startedAt;
    const report: LinkUpReport = {
      proof, afterKeySetMs: now - this.keySetAt, modemMac: this.modem ? macToString(this.modem) : '', hostActions: [...this.hostActions],
      nwInfoPolls: this.nwInfoPolls,
    };
    if (evseBridged !== undefined) report.evseBridged = evseBridged;
    this.out.events.push({ type: 'linkUp', report, evse: this.chosen!.key, nid: toHex(this.match!.nid) });
    this.go('Matched', why, undefined);
    this.out.result = {
      evseMac: this.chosen!.key,
      nid: this.match!.nid,
      nmk: this.match!.nmk,
      runId: this.ctx.runId,
      evses: this.observations(),
      timings: { ...this.timings },
      retries: { ...this.retries },
      link: report,
    };
  }

  private notJoined(now: number): void {
    const s = this.ctx.settings;
    const seen = this.hostActions.length ? `host actions ${this.hostActions.map(hex2).join(', ')}` : 'no VS_HST_ACTION.IND';
    const polled = s.linkUp === 'vendor-indication' ? '' : `, ${this.nwInfoCnfs} of ${this.nwInfoPolls} VS_NW_INFO polls answered${this.lastNwInfo ? ` (last: ${this.lastNwInfo})` : ''}`;
    this.fail('SLAC_LINK_NOT_JOINED', `the modem did not join the charger's AVLN (NID ${toHex(this.match!.nid)}) within TT_match_join (${s.matchJoinTimeoutMs} ms): ${seen}${polled}`, now, {
      linkUp: s.linkUp, hostActions: [...this.hostActions], nwInfoPolls: this.nwInfoPolls, nwInfoCnfs: this.nwInfoCnfs,
      ...(this.modem ? { modem: macToString(this.modem) } : {}),
    });
  }

  private onDeadline(now: number): void {
    const s = this.ctx.settings;
    switch (this.state) {
      case 'WaitForParmCnf':
        if (this.attempt < s.parmReqRetries) {
          this.attempt++;
          this.retries.parmReq++;
          this.out.events.push({ type: 'retry', message: 'CM_SLAC_PARM.REQ', attempt: this.attempt, of: s.parmReqRetries });
          this.sendParmReq();
          this.deadline = now + s.parmCnfTimeoutMs;
        } else {
          this.fail('SLAC_TIMEOUT_PARM_CNF', `no CM_SLAC_PARM.CNF after ${s.parmReqRetries + 1} request(s) (TT_match_response ${s.parmCnfTimeoutMs} ms)`, now);
        }
        return;
      case 'Sounding':
        this.soundNext(now);
        return;
      case 'WaitForAttenCharInd':
        this.decide(now);
        return;
      case 'WaitForMatchCnf':
        if (this.attempt < s.matchReqRetries) {
          this.attempt++;
          this.retries.matchReq++;
          this.out.events.push({ type: 'retry', message: 'CM_SLAC_MATCH.REQ', attempt: this.attempt, of: s.matchReqRetries });
          this.sendMatchReq();
          this.deadline = now + s.matchCnfTimeoutMs;
        } else {
          this.fail('SLAC_TIMEOUT_MATCH', `no CM_SLAC_MATCH.CNF from ${this.chosen!.key} after ${s.matchReqRetries + 1} request(s)`, now);
        }
        return;
      case 'WaitForSetKeyCnf':
        if (this.attempt < s.setKeyRetries) {
          this.attempt++;
          this.retries.setKey++;
          this.out.events.push({ type: 'retry', message: 'CM_SET_KEY.REQ', attempt: this.attempt, of: s.setKeyRetries });
          this.sendSetKey();
          this.deadline = now + s.setKeyCnfTimeoutMs;
        } else {
          this.fail('SLAC_TIMEOUT_SET_KEY', `local modem never confirmed CM_SET_KEY.REQ (${s.setKeyRetries + 1} request(s) to ${s.localModemMac})`, now);
        }
        return;
      case 'WaitForHostActionInd':
        this.notJoined(now);
        return;
      case 'WaitForNwInfoCnf':
        if (now >= this.joinDeadline) {
          this.notJoined(now);
          return;
        }
        // Poll again whether or not the last request was answered: a lost frame must not cost the join.
        this.sendNwInfoReq();
        this.deadline = this.nextPoll(now);
        return;
      default:
        return;
    }
  }

  /* ---------------------------------------------------------------------------------------------- frames */

  private onFrame(bytes: Uint8Array, now: number): void {
    if (isVendorMme(bytes)) return this.onVendorFrame(bytes, now);
    const r = decodeFrame(bytes);
    if (!r.ok) {
      // Unknown types are everyday traffic on a HomePlug segment; anything else is worth a line.
      this.drop(r.error.message, r.error.code);
      return;
    }
    const { dst, src, message } = r.frame;
    const srcKey = macToString(src);
    if (!sameBytes(dst, this.ctx.mac) && !sameBytes(dst, BROADCAST_MAC)) return this.drop('addressed to another station', undefined, message.type, srcKey);
    if (sameBytes(src, this.ctx.mac)) return this.drop('our own frame', undefined, message.type, srcKey);
    if ('runId' in message && !sameBytes(message.runId, this.ctx.runId)) {
      return this.drop(`foreign RunID ${toHex(message.runId)}`, undefined, message.type, srcKey);
    }
    switch (message.type) {
      case 'CM_SLAC_PARM.CNF':
        return this.onParmCnf(src, srcKey, message, now);
      case 'CM_ATTEN_CHAR.IND':
        return this.onAttenCharInd(src, srcKey, message, now);
      case 'CM_SLAC_MATCH.CNF':
        return this.onMatchCnf(srcKey, message, now);
      case 'CM_SET_KEY.CNF':
        return this.onSetKeyCnf(srcKey, message, now);
      default:
        return this.drop(`${message.type} is not for the EV side`, undefined, message.type, srcKey);
    }
  }

  private onParmCnf(src: Mac, key: string, m: MessageOf<'CM_SLAC_PARM.CNF'>, now: number): void {
    const known = this.evses.get(key);
    if (known?.parmCnf) return this.drop('repeated CM_SLAC_PARM.CNF', undefined, m.type, key);
    if (this.state !== 'WaitForParmCnf' && this.state !== 'Sounding' && this.state !== 'WaitForAttenCharInd') {
      return this.drop(`CM_SLAC_PARM.CNF in ${this.state}`, undefined, m.type, key);
    }
    if (!known && this.evses.size >= this.ctx.settings.maxChargers) return this.drop(`more than ${this.ctx.settings.maxChargers} chargers answered`, undefined, m.type, key);
    const rec = known ?? this.addEvse(src, key);
    rec.parmCnf = true;
    this.out.events.push({ type: 'received', message: m.type, src: key, detail: { numSounds: m.numSounds, timeOut: m.timeOut } });
    if (this.state === 'WaitForParmCnf') {
      this.timings.firstParmCnf = now - this.startedAt;
      this.startSounding(now);
    }
  }

  private onAttenCharInd(src: Mac, key: string, m: MessageOf<'CM_ATTEN_CHAR.IND'>, now: number): void {
    if (!sameBytes(m.sourceAddress, this.ctx.mac)) return this.drop(`attenuation for another EV ${macToString(m.sourceAddress)}`, undefined, m.type, key);
    const rec = this.evses.get(key);
    const collecting = this.state === 'Sounding' || this.state === 'WaitForAttenCharInd';
    if (rec?.atten) {
      // The charger repeats the IND when our RSP got lost: answer again, count once.
      this.sendAttenRsp(src, m);
      return this.drop('repeated CM_ATTEN_CHAR.IND (answered again)', undefined, m.type, key);
    }
    if (!collecting) return this.drop(`CM_ATTEN_CHAR.IND after TT_EV_atten_results (${this.state})`, undefined, m.type, key);
    if (!rec && this.evses.size >= this.ctx.settings.maxChargers) return this.drop(`more than ${this.ctx.settings.maxChargers} chargers answered`, undefined, m.type, key);
    const r = rec ?? this.addEvse(src, key);
    r.atten = m;
    r.average = m.groups.length ? m.groups.reduce((a, b) => a + b, 0) / m.groups.length : undefined;
    this.out.events.push({
      type: 'received', message: m.type, src: key,
      detail: { averageAttenuationDb: r.average === undefined ? null : Number(r.average.toFixed(2)), groups: m.groups.length, numSounds: m.numSounds },
    });
    this.sendAttenRsp(src, m);
    if (this.state === 'WaitForAttenCharInd' && this.everyAnsweringEvseReported()) this.decide(now);
  }

  private sendAttenRsp(to: Mac, m: MessageOf<'CM_ATTEN_CHAR.IND'>): void {
    this.emit(to, {
      type: 'CM_ATTEN_CHAR.RSP', ...ASSOC, sourceAddress: this.ctx.mac, runId: this.ctx.runId, sourceId: m.sourceId,
      respId: m.respId, result: 0,
    });
  }

  private onMatchCnf(key: string, m: MessageOf<'CM_SLAC_MATCH.CNF'>, now: number): void {
    if (this.state !== 'WaitForMatchCnf') return this.drop(`CM_SLAC_MATCH.CNF in ${this.state}`, undefined, m.type, key);
    if (key !== this.chosen!.key) return this.drop(`CM_SLAC_MATCH.CNF from ${key}, not the chosen charger`, undefined, m.type, key);
    if (!sameBytes(m.pevMac, this.ctx.mac)) return this.drop(`CM_SLAC_MATCH.CNF for PEV ${macToString(m.pevMac)}`, undefined, m.type, key);
    this.match = m;
    this.timings.matchCnf = now - this.startedAt;
    this.out.events.push({ type: 'received', message: m.type, src: key, detail: { nid: toHex(m.nid) } });
    this.attempt = 0;
    this.setKeyNonce = readU32(this.ctx.random(4));
    this.sendSetKey();
    this.go('WaitForSetKeyCnf', 'CM_SLAC_MATCH.CNF received: setting NMK/NID into the local modem', now + this.ctx.settings.setKeyCnfTimeoutMs);
  }

  private onSetKeyCnf(key: string, m: MessageOf<'CM_SET_KEY.CNF'>, now: number): void {
    if (this.state !== 'WaitForSetKeyCnf') return this.drop(`CM_SET_KEY.CNF in ${this.state}`, undefined, m.type, key);
    this.out.events.push({ type: 'received', message: m.type, src: key, detail: { result: m.result } });
    if (!this.ctx.settings.setKeySuccessResults.includes(m.result)) {
      this.fail('SLAC_SET_KEY_REJECTED', `local modem ${key} rejected CM_SET_KEY.REQ (Result 0x${m.result.toString(16).padStart(2, '0')})`, now, { result: m.result });
      return;
    }
    this.timings.keySet = now - this.startedAt;
    this.modem = macFromString(key);
    this.startLinkJoin(now, m.result);
  }

  /* ---------------------------------------------------------------------------------------------- vendor MMEs */

  private onVendorFrame(bytes: Uint8Array, now: number): void {
    const r = decodeQcaFrame(bytes);
    if (!r.ok) return this.drop(`vendor MME: ${r.error.message}`, r.error.code);
    const { dst, src, message } = r.frame;
    const srcKey = macToString(src);
    if (!sameBytes(dst, this.ctx.mac) && !sameBytes(dst, BROADCAST_MAC)) return this.drop('addressed to another station', undefined, message.type, srcKey);
    // Only the modem that took our key speaks for the link: a join claim from any other station is not evidence.
    if (!this.modem) return this.drop(`${message.type} before our modem confirmed CM_SET_KEY`, undefined, message.type, srcKey);
    if (!sameBytes(src, this.modem)) return this.drop(`${message.type} from ${srcKey}, not our modem ${macToString(this.modem)}`, undefined, message.type, srcKey);
    switch (message.type) {
      case 'VS_HST_ACTION.IND':
        return this.onHostActionInd(srcKey, r.frame.mmv, message, now);
      case 'VS_NW_INFO.CNF':
        return this.onNwInfoCnf(srcKey, message, now);
      default:
        return this.drop(`${message.type} is not for the host`, undefined, message.type, srcKey);
    }
  }

  private onHostActionInd(key: string, mmv: 0 | 1, m: QcaMessageOf<'VS_HST_ACTION.IND'>, now: number): void {
    this.hostActions.push(m.action);
    this.out.events.push({ type: 'received', message: m.type, src: key, detail: { action: hex2(m.action), sessionId: m.sessionId } });
    // The modem repeats the indication until its host answers (open-plc-utils HostActionResponse): always answer.
    this.emitVendor(this.modem!, mmv, { type: 'VS_HST_ACTION.RSP', status: 0, action: m.action, sessionId: m.sessionId, outstandingRetries: m.outstandingRetries });
    const s = this.ctx.settings;
    const waiting = this.state === 'WaitForHostActionInd' || (this.state === 'WaitForNwInfoCnf' && s.linkUp === 'vendor-indication-or-nw-info');
    if (waiting && s.joinedHostActions.includes(m.action)) {
      this.linkUp(now, 'VS_HST_ACTION.IND', `VS_HST_ACTION.IND action ${hex2(m.action)} from the modem: joined the charger's AVLN`);
    }
  }

  private onNwInfoCnf(key: string, m: QcaMessageOf<'VS_NW_INFO.CNF'>, now: number): void {
    if (this.state !== 'WaitForNwInfoCnf') return this.drop(`VS_NW_INFO.CNF in ${this.state}`, undefined, m.type, key);
    this.nwInfoCnfs++;
    const nid = this.match!.nid;
    const ours = m.avlns.find((a) => sameBytes(a.nid, nid));
    this.lastNwInfo = m.avlns.length === 0 ? 'in no AVLN'
      : `AVLNs ${m.avlns.map((a) => `${toHex(a.nid)}/${a.stations.length} station(s)`).join(', ')}`;
    this.out.events.push({ type: 'received', message: m.type, src: key, detail: { avlns: m.avlns.length, ourNid: !!ours, stations: ours?.stations.length ?? 0 } });
    // Joined = our modem is in the charger's AVLN (its NID) together with at least one other station.
    if (!ours || ours.stations.length === 0) return;
    const evse = this.chosen!.mac;
    const bridged = ours.stations.some((st) => sameBytes(st.bda, evse));
    this.linkUp(now, 'VS_NW_INFO.CNF', `VS_NW_INFO.CNF: in AVLN ${toHex(nid)} (TEI ${ours.tei}) with ${ours.stations.length} station(s)${bridged ? `, ${this.chosen!.key} bridged` : ''}`, bridged);
  }

  /* ---------------------------------------------------------------------------------------------- plumbing */

  private addEvse(mac: Mac, key: string): EvseRecord {
    const rec: EvseRecord = { mac, key, parmCnf: false, order: this.evses.size, chosen: false };
    this.evses.set(key, rec);
    return rec;
  }

  private observe(e: EvseRecord): EvseObservation {
    const o: EvseObservation = { mac: e.key, parmCnf: e.parmCnf, chosen: e.chosen };
    if (e.average !== undefined) o.averageAttenuationDb = Number(e.average.toFixed(2));
    if (e.atten) {
      o.groups = Array.from(e.atten.groups);
      o.soundsReceived = e.atten.numSounds;
    }
    if (e.rejected) o.rejected = e.rejected;
    return o;
  }

  /** Every charger seen so far (also on failure, for the report). */
  observations(): EvseObservation[] {
    return [...this.evses.values()].sort((a, b) => a.order - b.order).map((e) => this.observe(e));
  }

  private emit(dst: Mac, message: SlacMessage): void {
    const frame: SlacFrame = { dst, src: this.ctx.mac, message };
    this.out.send.push(encodeFrame(frame));
    const detail: Record<string, unknown> = {};
    if (message.type === 'CM_MNBC_SOUND.IND') detail.cnt = message.count;
    if (message.type === 'CM_SLAC_PARM.REQ' || message.type === 'CM_START_ATTEN_CHAR.IND') detail.runId = toHex(this.ctx.runId);
    this.out.events.push({ type: 'sent', message: message.type, dst: macToString(dst), detail });
  }

  private emitVendor(dst: Mac, mmv: 0 | 1, message: QcaMessage): void {
    this.out.send.push(encodeQcaFrame({ dst, src: this.ctx.mac, mmv, message }));
    const detail: Record<string, unknown> = {};
    if (message.type === 'VS_HST_ACTION.RSP') detail.action = hex2(message.action);
    if (message.type === 'VS_NW_INFO.REQ') detail.poll = this.nwInfoPolls;
    this.out.events.push({ type: 'sent', message: message.type, dst: macToString(dst), detail });
  }

  private drop(reason: string, code?: string, message?: SlacMessageType | QcaMessageType, src?: string): void {
    const ev: SlacEvent = { type: 'dropped', reason };
    if (code) ev.code = code;
    if (message) ev.message = message;
    if (src) ev.src = src;
    this.out.events.push(ev);
  }

  private go(to: SlacStateName, why: string, deadline: number | undefined): void {
    this.out.events.push({ type: 'transition', from: this.state, to, why });
    this.state = to;
    this.deadline = deadline;
  }

  private fail(code: SlacErrorCode, message: string, now: number, details: Record<string, unknown> = {}): void {
    this.timings.total = now - this.startedAt;
    const from = this.state;
    this.go('Failed', message, undefined);
    this.out.error = new SlacError(code, message, { state: from, ...details, evses: this.observations(), runId: toHex(this.ctx.runId) });
  }

  private flush(): SlacOutput {
    this.out.state = this.state;
    if (this.deadline !== undefined) this.out.deadline = this.deadline;
    return this.out;
  }
}

function hex2(n: number): string {
  return `0x${n.toString(16).padStart(2, '0')}`;
}

function readU32(b: Uint8Array): number {
  return ((b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0);
}

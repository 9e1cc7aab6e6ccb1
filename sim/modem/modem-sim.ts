import type { Logger } from '../../core/logger.ts';
import { ATTEN_GROUPS, HOST_ACTION, LOCAL_MODEM_MAC } from '../../firmware/slac/constants.ts';
import { decodeFrame, encodeFrame, macFromString, macToString, sameBytes, toHex, type Mac } from '../../firmware/slac/codec.ts';
import { decodeQcaFrame, encodeQcaFrame, isVendorMme, type NwInfoAvln, type QcaFrame } from '../../firmware/slac/qca-vendor.ts';
import { SystemClock } from '../../hal/clock/system.ts';
import type { Clock, TimerId } from '../../hal/clock/types.ts';
import type { PlcLink } from '../../hal/plc/types.ts';

/**
 * A QCA7000 modem as its host sees it, for either side of the link:
 * - answers CM_SET_KEY.REQ sent to the local management address (00:B0:52:00:00:01) or to the modem's own MAC with
 *   CM_SET_KEY.CNF (Result configurable; 0x01 like QCA firmware) and records the NMK/NID it was given;
 * - on the charger side, emits one CM_ATTEN_PROFILE.IND to its host per CM_MNBC_SOUND.IND it "receives over the
 *   powerline", carrying a configurable attenuation per carrier group (what Debian's `evse` and real EVSE hosts
 *   average into CM_ATTEN_CHAR.IND).
 * - after a key is set, "joins" the AVLN of that NID at once, after joinDelayMs, or never (neverJoin), as a QCA7000
 *   does after CM_SET_KEY (seconds on real chargers), and reports it the two ways field EV stacks read it
 *   (PROTOCOLS.md §9): VS_HST_ACTION.IND to its host (action 0x09 when the key is taken, 0x0a when joined; each
 *   repeated until the host's VS_HST_ACTION.RSP, like QCA firmware), and VS_NW_INFO.CNF answers (no AVLN before the
 *   join; then the NID with the peer's modem as member station, the peer host as its bridged address).
 * It works on any PlcLink: an in-memory SimSegment station (promiscuous) or an AF_PACKET socket on a netdev.
 */
export interface ModemSimOptions {
  side: 'ev' | 'evse';
  /** The modem's own MAC (source of its answers). Real QCA modems have 00:B0:52:xx:xx:xx addresses. */
  modemMac?: string;
  /** Host the modem serves. Unset: learned from the first CM_SET_KEY.REQ (how Debian's evse starts). */
  hostMac?: string;
  /** CM_SET_KEY.CNF Result (QCA firmware: 0x01 on success). */
  setKeyResult?: number;
  /** Never answer CM_SET_KEY.REQ (fault: modem hangs). */
  ignoreSetKey?: boolean;
  /** Average attenuation in dB reported per group (charger side), or all 58 group values. */
  attenuationDb?: number | number[];
  /** Time from the CM_SET_KEY.CNF to the AVLN join (default 0: joins at once). */
  joinDelayMs?: number;
  /** Never joins (fault: charger's modem out of reach, wrong NMK on its side). */
  neverJoin?: boolean;
  /** Sends no VS_HST_ACTION.IND (firmware that only answers VS_NW_INFO). */
  noHostActionInd?: boolean;
  /** Does not answer VS_NW_INFO.REQ (firmware that only indicates). */
  noNwInfo?: boolean;
  /** Interval of VS_HST_ACTION.IND repetitions while the host does not answer, and how many (default 1000 ms, 2). */
  hostActionRepeatMs?: number;
  hostActionRepeats?: number;
  /** Timers for the join and the repetitions (default: the system clock). */
  clock?: Clock;
  log?: Logger;
}

interface Join {
  nid: Uint8Array;
  joined: boolean;
  timer?: TimerId;
}

interface PendingInd {
  action: number;
  left: number;
  timer?: TimerId;
}

export interface KeySetRecord {
  host: string;
  nid: string;
  nmk: string;
  at: number;
}

export class ModemSim {
  readonly modemMac: Mac;
  private host: Mac | undefined;
  private readonly groups: Uint8Array;
  private unsubscribe: () => void;
  /** Every key its host set, in order. */
  readonly keys: KeySetRecord[] = [];
  /** Sounds forwarded as CM_ATTEN_PROFILE.IND. */
  profilesSent = 0;
  /** VS_HST_ACTION.IND sent (repetitions included) and the host's answers, as action codes. */
  readonly hostActionsSent: number[] = [];
  readonly hostActionRsps: number[] = [];
  /** VS_NW_INFO.REQ answered. */
  nwInfoAnswered = 0;
  private nonce = 0x5a5a0001;
  private readonly clock: Clock;
  private join: Join | undefined;
  /** The host on the other side of the match (learned from CM_SLAC_MATCH.REQ): the AVLN's bridged address. */
  private peerHost: Mac | undefined;
  private readonly pending = new Map<number, PendingInd>();

  constructor(private readonly link: PlcLink, private readonly options: ModemSimOptions) {
    this.modemMac = macFromString(options.modemMac ?? (options.side === 'ev' ? '00:b0:52:00:00:e1' : '00:b0:52:00:00:c1'));
    if (options.hostMac) this.host = macFromString(options.hostMac);
    const a = options.attenuationDb ?? 20;
    this.groups = Array.isArray(a) ? Uint8Array.from(a) : new Uint8Array(ATTEN_GROUPS).fill(Math.round(a));
    this.clock = options.clock ?? new SystemClock();
    this.unsubscribe = link.onFrame((frame) => this.onFrame(frame));
  }

  /** The AVLN joined, as NID hex (undefined before the join). */
  get joinedNid(): string | undefined {
    return this.join?.joined ? toHex(this.join.nid) : undefined;
  }

  get hostMac(): string | undefined {
    return this.host ? macToString(this.host) : undefined;
  }

  private onFrame(bytes: Uint8Array): void {
    if (isVendorMme(bytes)) return this.onVendor(bytes);
    const r = decodeFrame(bytes);
    if (!r.ok) return;
    const { dst, src, message } = r.frame;
    if (sameBytes(src, this.modemMac)) return;
    if (message.type === 'CM_SET_KEY.REQ') {
      if (!sameBytes(dst, LOCAL_MODEM_MAC) && !sameBytes(dst, this.modemMac)) return;
      if (this.host && !sameBytes(src, this.host)) return; // another host's modem answers that one
      if (!this.host) this.host = src;
      const record = { host: macToString(src), nid: toHex(message.nid), nmk: toHex(message.newKey), at: Date.now() };
      this.keys.push(record);
      this.options.log?.info({ side: this.options.side, ...record, ignored: !!this.options.ignoreSetKey }, 'CM_SET_KEY.REQ from host');
      if (this.options.ignoreSetKey) return;
      const result = this.options.setKeyResult ?? 0x01;
      void this.link.send(encodeFrame({
        dst: src, src: this.modemMac,
        message: {
          type: 'CM_SET_KEY.CNF', result, myNonce: this.nonce++, yourNonce: message.myNonce, pid: message.pid, prn: message.prn,
          pmn: message.pmn, ccoCapability: message.ccoCapability,
        },
      })).catch(() => undefined);
      if (result === 0x00 || result === 0x01) this.keyTaken(message.nid);
      return;
    }
    if (message.type === 'CM_SLAC_MATCH.REQ') {
      // Ours is the EV side when our host sends the request, the charger side when it receives it.
      if (this.host && sameBytes(src, this.host)) this.peerHost = message.evseMac;
      else if (this.host && sameBytes(dst, this.host)) this.peerHost = message.pevMac;
      return;
    }
    if (message.type === 'CM_MNBC_SOUND.IND' && this.options.side === 'evse') {
      if (!this.host || sameBytes(src, this.host)) return;
      this.profilesSent++;
      void this.link.send(encodeFrame({
        dst: this.host, src: this.modemMac,
        message: { type: 'CM_ATTEN_PROFILE.IND', pevMac: src, groups: this.groups },
      })).catch(() => undefined);
    }
  }

  /* ------------------------------------------------------------------------------------- AVLN join after SET_KEY */

  private keyTaken(nid: Uint8Array): void {
    if (this.join?.timer !== undefined) this.clock.clearTimer(this.join.timer);
    for (const p of this.pending.values()) if (p.timer !== undefined) this.clock.clearTimer(p.timer);
    this.pending.clear();
    const join: Join = { nid: Uint8Array.from(nid), joined: false };
    this.join = join;
    this.indicate(HOST_ACTION.FIRST_AFTER_SET_KEY);
    if (this.options.neverJoin) return;
    const delay = this.options.joinDelayMs ?? 0;
    if (delay <= 0) return this.joined(join);
    join.timer = this.clock.setTimer(() => {
      join.timer = undefined;
      this.joined(join);
    }, delay);
  }

  private joined(join: Join): void {
    if (this.join !== join) return;
    join.joined = true;
    this.options.log?.info({ side: this.options.side, nid: toHex(join.nid), peer: this.peerHost ? macToString(this.peerHost) : null }, 'modem joined the AVLN');
    this.indicate(HOST_ACTION.JOINED);
  }

  /** VS_HST_ACTION.IND to the host, repeated until answered. */
  private indicate(action: number): void {
    if (this.options.noHostActionInd || !this.host) return;
    const p: PendingInd = { action, left: this.options.hostActionRepeats ?? 2 };
    this.pending.set(action, p);
    const send = () => {
      this.hostActionsSent.push(action);
      this.sendVendor({ dst: this.host!, src: this.modemMac, mmv: 0, message: { type: 'VS_HST_ACTION.IND', action, sessionId: 0, outstandingRetries: p.left, retryTimer10ms: (this.options.hostActionRepeatMs ?? 1000) / 10 } });
      if (p.left-- <= 0) {
        p.timer = undefined;
        this.pending.delete(action);
        return;
      }
      p.timer = this.clock.setTimer(send, this.options.hostActionRepeatMs ?? 1000);
    };
    send();
  }

  private onVendor(bytes: Uint8Array): void {
    const r = decodeQcaFrame(bytes);
    if (!r.ok) return;
    const { dst, src, message } = r.frame;
    if (!this.host || !sameBytes(src, this.host)) return;
    if (!sameBytes(dst, LOCAL_MODEM_MAC) && !sameBytes(dst, this.modemMac)) return;
    if (message.type === 'VS_HST_ACTION.RSP') {
      this.hostActionRsps.push(message.action);
      const p = this.pending.get(message.action);
      if (p) {
        if (p.timer !== undefined) this.clock.clearTimer(p.timer);
        this.pending.delete(message.action);
      }
      return;
    }
    if (message.type === 'VS_NW_INFO.REQ' && !this.options.noNwInfo) {
      this.nwInfoAnswered++;
      const avlns: NwInfoAvln[] = [];
      if (this.join?.joined) {
        // The peer's modem is the CCo of the charger's AVLN (the charger side sets its key first), we are TEI 2.
        const peerModem = macFromString(this.options.side === 'ev' ? '00:b0:52:00:00:c1' : '00:b0:52:00:00:e1');
        avlns.push({
          nid: this.join.nid, snid: 1, tei: 2, role: 0, ccoMac: peerModem, ccoTei: 1,
          stations: [{ mac: peerModem, tei: 1, bda: this.peerHost ?? new Uint8Array(6), avgPhyTxMbps: 9, avgPhyRxMbps: 9 }],
        });
      }
      // Answer in the form asked (MMV 0: AV 1.0 layout; MMV 1: the AR7400+ layout).
      this.sendVendor({ dst: src, src: this.modemMac, mmv: r.frame.mmv, message: { type: 'VS_NW_INFO.CNF', avlns } });
    }
  }

  private sendVendor(frame: QcaFrame): void {
    void this.link.send(encodeQcaFrame(frame)).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.unsubscribe();
    if (this.join?.timer !== undefined) this.clock.clearTimer(this.join.timer);
    for (const p of this.pending.values()) if (p.timer !== undefined) this.clock.clearTimer(p.timer);
    this.pending.clear();
  }
}

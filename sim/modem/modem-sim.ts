import type { Logger } from '../../core/logger.ts';
import { ATTEN_GROUPS, LOCAL_MODEM_MAC } from '../../firmware/slac/constants.ts';
import { decodeFrame, encodeFrame, macFromString, macToString, sameBytes, toHex, type Mac } from '../../firmware/slac/codec.ts';
import type { PlcLink } from '../../hal/plc/types.ts';

/**
 * A QCA7000 modem as its host sees it, for either side of the link:
 * - answers CM_SET_KEY.REQ sent to the local management address (00:B0:52:00:00:01) or to the modem's own MAC with
 *   CM_SET_KEY.CNF (Result configurable; 0x01 like QCA firmware) and records the NMK/NID it was given;
 * - on the charger side, emits one CM_ATTEN_PROFILE.IND to its host per CM_MNBC_SOUND.IND it "receives over the
 *   powerline", carrying a configurable attenuation per carrier group (what Debian's `evse` and real EVSE hosts
 *   average into CM_ATTEN_CHAR.IND).
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
  log?: Logger;
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
  private nonce = 0x5a5a0001;

  constructor(private readonly link: PlcLink, private readonly options: ModemSimOptions) {
    this.modemMac = macFromString(options.modemMac ?? (options.side === 'ev' ? '00:b0:52:00:00:e1' : '00:b0:52:00:00:c1'));
    if (options.hostMac) this.host = macFromString(options.hostMac);
    const a = options.attenuationDb ?? 20;
    this.groups = Array.isArray(a) ? Uint8Array.from(a) : new Uint8Array(ATTEN_GROUPS).fill(Math.round(a));
    this.unsubscribe = link.onFrame((frame) => this.onFrame(frame));
  }

  get hostMac(): string | undefined {
    return this.host ? macToString(this.host) : undefined;
  }

  private onFrame(bytes: Uint8Array): void {
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

  async close(): Promise<void> {
    this.unsubscribe();
  }
}

import {
  APPLICATION_TYPE_PEV_EVSE, ETHERTYPE_HOMEPLUG, MATCH_MVF_LENGTH, MMTYPE, MMV_AV11, SECURITY_TYPE_NONE,
} from './constants.ts';
import { SlacError, type SlacErrorCode } from './errors.ts';
import { parseHex, sameBytes, toHex } from '../../core/bytes.ts';

/**
 * SLAC management messages (MMEs) on ethertype 0x88E1: exact encoders and liberal decoders.
 * Layouts: PROTOCOLS.md §1 (HomePlug Green PHY 1.1 §11, ISO 15118-3 Annex A). Decoders never throw: they return
 * a typed error for anything they cannot use, and never allocate more than the frame they were given.
 */
export type Mac = Uint8Array; // 6 bytes

interface Assoc {
  /** APPLICATION_TYPE (0 = PEV–EVSE association). */
  applicationType: number;
  /** SECURITY_TYPE (0 = none). */
  securityType: number;
}

export type SlacMessage =
  | ({ type: 'CM_SLAC_PARM.REQ'; runId: Uint8Array; cipherSuiteSetSize: number } & Assoc)
  | ({
      type: 'CM_SLAC_PARM.CNF'; msoundTarget: Mac; numSounds: number; timeOut: number; respType: number;
      forwardingSta: Mac; runId: Uint8Array;
    } & Assoc)
  | ({
      type: 'CM_START_ATTEN_CHAR.IND'; numSounds: number; timeOut: number; respType: number; forwardingSta: Mac;
      runId: Uint8Array;
    } & Assoc)
  | ({ type: 'CM_MNBC_SOUND.IND'; senderId: Uint8Array; count: number; runId: Uint8Array; rnd: Uint8Array } & Assoc)
  | { type: 'CM_ATTEN_PROFILE.IND'; pevMac: Mac; groups: Uint8Array }
  | ({
      type: 'CM_ATTEN_CHAR.IND'; sourceAddress: Mac; runId: Uint8Array; sourceId: Uint8Array; respId: Uint8Array;
      numSounds: number; groups: Uint8Array;
    } & Assoc)
  | ({
      type: 'CM_ATTEN_CHAR.RSP'; sourceAddress: Mac; runId: Uint8Array; sourceId: Uint8Array; respId: Uint8Array;
      result: number;
    } & Assoc)
  | ({ type: 'CM_SLAC_MATCH.REQ'; pevId: Uint8Array; pevMac: Mac; evseId: Uint8Array; evseMac: Mac; runId: Uint8Array } & Assoc)
  | ({
      type: 'CM_SLAC_MATCH.CNF'; pevId: Uint8Array; pevMac: Mac; evseId: Uint8Array; evseMac: Mac; runId: Uint8Array;
      nid: Uint8Array; nmk: Uint8Array;
    } & Assoc)
  | {
      type: 'CM_SET_KEY.REQ'; keyType: number; myNonce: number; yourNonce: number; pid: number; prn: number; pmn: number;
      ccoCapability: number; nid: Uint8Array; newEks: number; newKey: Uint8Array;
    }
  | {
      type: 'CM_SET_KEY.CNF'; result: number; myNonce: number; yourNonce: number; pid: number; prn: number; pmn: number;
      ccoCapability: number;
    };

export type SlacMessageType = SlacMessage['type'];
export type MessageOf<T extends SlacMessageType> = Extract<SlacMessage, { type: T }>;

export interface SlacFrame<M extends SlacMessage = SlacMessage> {
  dst: Mac;
  src: Mac;
  message: M;
}

const TYPE_TO_MMTYPE: Record<SlacMessageType, number> = {
  'CM_SLAC_PARM.REQ': MMTYPE.CM_SLAC_PARM_REQ,
  'CM_SLAC_PARM.CNF': MMTYPE.CM_SLAC_PARM_CNF,
  'CM_START_ATTEN_CHAR.IND': MMTYPE.CM_START_ATTEN_CHAR_IND,
  'CM_MNBC_SOUND.IND': MMTYPE.CM_MNBC_SOUND_IND,
  'CM_ATTEN_PROFILE.IND': MMTYPE.CM_ATTEN_PROFILE_IND,
  'CM_ATTEN_CHAR.IND': MMTYPE.CM_ATTEN_CHAR_IND,
  'CM_ATTEN_CHAR.RSP': MMTYPE.CM_ATTEN_CHAR_RSP,
  'CM_SLAC_MATCH.REQ': MMTYPE.CM_SLAC_MATCH_REQ,
  'CM_SLAC_MATCH.CNF': MMTYPE.CM_SLAC_MATCH_CNF,
  'CM_SET_KEY.REQ': MMTYPE.CM_SET_KEY_REQ,
  'CM_SET_KEY.CNF': MMTYPE.CM_SET_KEY_CNF,
};
const MMTYPE_TO_TYPE = new Map<number, SlacMessageType>(
  Object.entries(TYPE_TO_MMTYPE).map(([k, v]) => [v, k as SlacMessageType]),
);

export function mmtypeOf(type: SlacMessageType): number {
  return TYPE_TO_MMTYPE[type];
}

/* ------------------------------------------------------------------------------------------------ helpers */

export function macToString(mac: Uint8Array): string {
  let s = '';
  for (let i = 0; i < mac.length; i++) s += (i ? ':' : '') + mac[i]!.toString(16).padStart(2, '0');
  return s;
}

export function macFromString(text: string): Mac {
  const parts = text.trim().split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) {
    throw new SlacError('SLAC_DECODE_BAD_FIELD', `bad MAC address "${text}"`, { text });
  }
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

export { toHex, sameBytes };

export function fromHex(hex: string, length?: number): Uint8Array {
  const bytes = parseHex(hex, length);
  if (!bytes) throw new SlacError('SLAC_DECODE_BAD_FIELD', `bad hex value (want ${length ?? 'any'} bytes)`, { length });
  return bytes;
}

/** Writer with exact field sizes: a field of the wrong length is a programming error in our own sender. */
class Writer {
  readonly bytes: Uint8Array;
  private pos = 0;
  constructor(size: number) {
    this.bytes = new Uint8Array(size);
  }
  u8(v: number): this {
    this.bytes[this.pos++] = v & 0xff;
    return this;
  }
  u16le(v: number): this {
    this.bytes[this.pos++] = v & 0xff;
    this.bytes[this.pos++] = (v >> 8) & 0xff;
    return this;
  }
  u16be(v: number): this {
    this.bytes[this.pos++] = (v >> 8) & 0xff;
    this.bytes[this.pos++] = v & 0xff;
    return this;
  }
  u32le(v: number): this {
    for (let i = 0; i < 4; i++) this.bytes[this.pos++] = (v >>> (8 * i)) & 0xff;
    return this;
  }
  raw(b: Uint8Array, size: number, what: string): this {
    if (b.length !== size) throw new RangeError(`${what}: ${b.length} bytes, layout needs ${size}`);
    this.bytes.set(b, this.pos);
    this.pos += size;
    return this;
  }
  zeros(n: number): this {
    this.pos += n;
    return this;
  }
  get length(): number {
    return this.pos;
  }
}

/* ------------------------------------------------------------------------------------------------ encode */

const HEADER = 19;
export const MIN_FRAME = 60;

/** Encodes one MME into a frame of the exact layout, zero-padded to the 60-byte ethernet minimum. */
export function encodeFrame(frame: SlacFrame): Uint8Array {
  const m = frame.message;
  const w = new Writer(512);
  w.raw(frame.dst, 6, 'ODA').raw(frame.src, 6, 'OSA').u16be(ETHERTYPE_HOMEPLUG).u8(MMV_AV11).u16le(mmtypeOf(m.type)).u8(0).u8(0);
  switch (m.type) {
    case 'CM_SLAC_PARM.REQ':
      w.u8(m.applicationType).u8(m.securityType).raw(m.runId, 8, 'RunID').u8(m.cipherSuiteSetSize);
      // Cipher suites are only present with SECURITY_TYPE 1; we never announce any.
      if (m.cipherSuiteSetSize !== 0) throw new RangeError('cipher suites are not supported');
      break;
    case 'CM_SLAC_PARM.CNF':
      w.raw(m.msoundTarget, 6, 'M-SOUND_TARGET').u8(m.numSounds).u8(m.timeOut).u8(m.respType)
        .raw(m.forwardingSta, 6, 'FORWARDING_STA').u8(m.applicationType).u8(m.securityType).raw(m.runId, 8, 'RunID');
      break;
    case 'CM_START_ATTEN_CHAR.IND':
      w.u8(m.applicationType).u8(m.securityType).u8(m.numSounds).u8(m.timeOut).u8(m.respType)
        .raw(m.forwardingSta, 6, 'FORWARDING_STA').raw(m.runId, 8, 'RunID');
      break;
    case 'CM_MNBC_SOUND.IND':
      w.u8(m.applicationType).u8(m.securityType).raw(m.senderId, 17, 'SenderID').u8(m.count).raw(m.runId, 8, 'RunID')
        .zeros(8).raw(m.rnd, 16, 'RND');
      break;
    case 'CM_ATTEN_PROFILE.IND':
      if (m.groups.length > 255) throw new RangeError('too many groups');
      w.raw(m.pevMac, 6, 'PEV_MAC').u8(m.groups.length).u8(0).raw(m.groups, m.groups.length, 'AAG');
      break;
    case 'CM_ATTEN_CHAR.IND':
      if (m.groups.length > 255) throw new RangeError('too many groups');
      w.u8(m.applicationType).u8(m.securityType).raw(m.sourceAddress, 6, 'SOURCE_ADDRESS').raw(m.runId, 8, 'RunID')
        .raw(m.sourceId, 17, 'SOURCE_ID').raw(m.respId, 17, 'RESP_ID').u8(m.numSounds).u8(m.groups.length)
        .raw(m.groups, m.groups.length, 'AAG');
      break;
    case 'CM_ATTEN_CHAR.RSP':
      w.u8(m.applicationType).u8(m.securityType).raw(m.sourceAddress, 6, 'SOURCE_ADDRESS').raw(m.runId, 8, 'RunID')
        .raw(m.sourceId, 17, 'SOURCE_ID').raw(m.respId, 17, 'RESP_ID').u8(m.result);
      break;
    case 'CM_SLAC_MATCH.REQ':
      w.u8(m.applicationType).u8(m.securityType).u16le(MATCH_MVF_LENGTH.REQ).raw(m.pevId, 17, 'PEV_ID')
        .raw(m.pevMac, 6, 'PEV_MAC').raw(m.evseId, 17, 'EVSE_ID').raw(m.evseMac, 6, 'EVSE_MAC').raw(m.runId, 8, 'RunID')
        .zeros(8);
      break;
    case 'CM_SLAC_MATCH.CNF':
      w.u8(m.applicationType).u8(m.securityType).u16le(MATCH_MVF_LENGTH.CNF).raw(m.pevId, 17, 'PEV_ID')
        .raw(m.pevMac, 6, 'PEV_MAC').raw(m.evseId, 17, 'EVSE_ID').raw(m.evseMac, 6, 'EVSE_MAC').raw(m.runId, 8, 'RunID')
        .zeros(8).raw(m.nid, 7, 'NID').zeros(1).raw(m.nmk, 16, 'NMK');
      break;
    case 'CM_SET_KEY.REQ':
      w.u8(m.keyType).u32le(m.myNonce).u32le(m.yourNonce).u8(m.pid).u16le(m.prn).u8(m.pmn).u8(m.ccoCapability)
        .raw(m.nid, 7, 'NID').u8(m.newEks).raw(m.newKey, 16, 'NewKey');
      break;
    case 'CM_SET_KEY.CNF':
      w.u8(m.result).u32le(m.myNonce).u32le(m.yourNonce).u8(m.pid).u16le(m.prn).u8(m.pmn).u8(m.ccoCapability);
      break;
  }
  const out = new Uint8Array(Math.max(MIN_FRAME, w.length));
  out.set(w.bytes.subarray(0, w.length));
  return out;
}

/* ------------------------------------------------------------------------------------------------ decode */

export type DecodeResult = { ok: true; frame: SlacFrame } | { ok: false; error: SlacError };

/** Minimum body length (bytes after the 19-byte header) each message needs to be usable. */
const MIN_BODY: Record<SlacMessageType, number> = {
  'CM_SLAC_PARM.REQ': 10, // CipherSuiteSetSize may be missing in short frames: read it as 0 when absent
  'CM_SLAC_PARM.CNF': 25,
  'CM_START_ATTEN_CHAR.IND': 19,
  'CM_MNBC_SOUND.IND': 28, // through RunID: field sounds of 64 bytes cut the random field short
  'CM_ATTEN_PROFILE.IND': 8,
  'CM_ATTEN_CHAR.IND': 52,
  'CM_ATTEN_CHAR.RSP': 51,
  'CM_SLAC_MATCH.REQ': 58, // through RunID; the reserved tail may be missing
  'CM_SLAC_MATCH.CNF': 90,
  'CM_SET_KEY.REQ': 38,
  'CM_SET_KEY.CNF': 14,
};

function fail(code: SlacErrorCode, message: string, details: Record<string, unknown> = {}): DecodeResult {
  return { ok: false, error: new SlacError(code, message, details) };
}

/**
 * Decodes one ethernet frame. Liberal: trailing bytes and padding are ignored, NumGroups is read rather than a
 * fixed length demanded, reserved fields are not checked. Anything unusable is a typed error, never an exception.
 */
export function decodeFrame(bytes: Uint8Array): DecodeResult {
  if (!(bytes instanceof Uint8Array)) return fail('SLAC_DECODE_TRUNCATED', 'not a byte frame');
  if (bytes.length < 17) return fail('SLAC_DECODE_TRUNCATED', `frame of ${bytes.length} bytes is shorter than an MME header`, { length: bytes.length });
  const ethertype = (bytes[12]! << 8) | bytes[13]!;
  if (ethertype !== ETHERTYPE_HOMEPLUG) return fail('SLAC_DECODE_NOT_HOMEPLUG', `ethertype 0x${ethertype.toString(16)}`, { ethertype });
  const mmv = bytes[14]!;
  const mmtype = bytes[15]! | (bytes[16]! << 8);
  // HomePlug AV 1.0 (MMV 0) has no fragmentation fields; AV 1.1 / Green PHY (MMV 1) and AV2 (MMV 2) do.
  let header: number;
  if (mmv === 0) header = 17;
  else if (mmv === 1 || mmv === 2) {
    if (bytes.length < HEADER) return fail('SLAC_DECODE_TRUNCATED', 'MME header cut short', { length: bytes.length });
    // FMSN/FMID are not checked: SLAC messages are never fragmented and senders disagree on these bytes' order.
    header = HEADER;
  } else return fail('SLAC_DECODE_BAD_MMV', `MMV ${mmv}`, { mmv });
  const type = MMTYPE_TO_TYPE.get(mmtype);
  if (!type) return fail('SLAC_DECODE_UNKNOWN_MMTYPE', `MMTYPE 0x${mmtype.toString(16).padStart(4, '0')}`, { mmtype });
  const body = bytes.subarray(header);
  if (body.length < MIN_BODY[type]) {
    return fail('SLAC_DECODE_TRUNCATED', `${type}: ${body.length} body bytes, need ${MIN_BODY[type]}`, { type, length: body.length });
  }
  // Copies, so a decoded message never aliases a reused receive buffer.
  const cut = (o: number, n: number) => body.slice(o, o + n);
  const u32 = (o: number) => (body[o]! | (body[o + 1]! << 8) | (body[o + 2]! << 16) | (body[o + 3]! << 24)) >>> 0;
  const u16 = (o: number) => body[o]! | (body[o + 1]! << 8);
  const dst = bytes.slice(0, 6);
  const src = bytes.slice(6, 12);
  let message: SlacMessage;
  switch (type) {
    case 'CM_SLAC_PARM.REQ':
      message = { type, applicationType: body[0]!, securityType: body[1]!, runId: cut(2, 8), cipherSuiteSetSize: body[10] ?? 0 };
      break;
    case 'CM_SLAC_PARM.CNF':
      message = {
        type, msoundTarget: cut(0, 6), numSounds: body[6]!, timeOut: body[7]!, respType: body[8]!, forwardingSta: cut(9, 6),
        applicationType: body[15]!, securityType: body[16]!, runId: cut(17, 8),
      };
      break;
    case 'CM_START_ATTEN_CHAR.IND':
      message = {
        type, applicationType: body[0]!, securityType: body[1]!, numSounds: body[2]!, timeOut: body[3]!, respType: body[4]!,
        forwardingSta: cut(5, 6), runId: cut(11, 8),
      };
      break;
    case 'CM_MNBC_SOUND.IND': {
      const rnd = new Uint8Array(16);
      rnd.set(body.subarray(36, 52));
      message = { type, applicationType: body[0]!, securityType: body[1]!, senderId: cut(2, 17), count: body[19]!, runId: cut(20, 8), rnd };
      break;
    }
    case 'CM_ATTEN_PROFILE.IND': {
      const n = body[6]!;
      if (body.length < 8 + n) return fail('SLAC_DECODE_TRUNCATED', `${type}: NumGroups ${n} exceeds the frame`, { type, numGroups: n });
      message = { type, pevMac: cut(0, 6), groups: cut(8, n) };
      break;
    }
    case 'CM_ATTEN_CHAR.IND': {
      const n = body[51]!;
      if (body.length < 52 + n) return fail('SLAC_DECODE_TRUNCATED', `${type}: NumGroups ${n} exceeds the frame`, { type, numGroups: n });
      message = {
        type, applicationType: body[0]!, securityType: body[1]!, sourceAddress: cut(2, 6), runId: cut(8, 8),
        sourceId: cut(16, 17), respId: cut(33, 17), numSounds: body[50]!, groups: cut(52, n),
      };
      break;
    }
    case 'CM_ATTEN_CHAR.RSP':
      message = {
        type, applicationType: body[0]!, securityType: body[1]!, sourceAddress: cut(2, 6), runId: cut(8, 8),
        sourceId: cut(16, 17), respId: cut(33, 17), result: body[50]!,
      };
      break;
    case 'CM_SLAC_MATCH.REQ':
      message = {
        type, applicationType: body[0]!, securityType: body[1]!, pevId: cut(4, 17), pevMac: cut(21, 6),
        evseId: cut(27, 17), evseMac: cut(44, 6), runId: cut(50, 8),
      };
      break;
    case 'CM_SLAC_MATCH.CNF':
      message = {
        type, applicationType: body[0]!, securityType: body[1]!, pevId: cut(4, 17), pevMac: cut(21, 6),
        evseId: cut(27, 17), evseMac: cut(44, 6), runId: cut(50, 8), nid: cut(66, 7), nmk: cut(74, 16),
      };
      break;
    case 'CM_SET_KEY.REQ':
      message = {
        type, keyType: body[0]!, myNonce: u32(1), yourNonce: u32(5), pid: body[9]!, prn: u16(10), pmn: body[12]!,
        ccoCapability: body[13]!, nid: cut(14, 7), newEks: body[21]!, newKey: cut(22, 16),
      };
      break;
    case 'CM_SET_KEY.CNF':
      message = {
        type, result: body[0]!, myNonce: u32(1), yourNonce: u32(5), pid: body[9]!, prn: u16(10), pmn: body[12]!,
        ccoCapability: body[13]!,
      };
      break;
  }
  return { ok: true, frame: { dst, src, message } };
}

/** Association fields every SLAC message we send carries. */
export const ASSOC: Assoc = { applicationType: APPLICATION_TYPE_PEV_EVSE, securityType: SECURITY_TYPE_NONE };

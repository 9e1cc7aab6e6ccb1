import { ETHERTYPE_HOMEPLUG, QCA_OUI, VS_MMTYPE } from './constants.ts';
import { SlacError, type SlacErrorCode } from './errors.ts';
import { sameBytes } from '../../core/bytes.ts';
import type { Mac } from './codec.ts';

/**
 * Qualcomm (QCA7000 / Atheros) vendor-specific MMEs the EV host exchanges with its own modem after CM_SET_KEY to learn
 * when the modem has joined the charger's AVLN (PROTOCOLS.md §9). Layouts are facts from Qualcomm's public
 * open-plc-utils headers (mme/qualcomm.h, mme/mme.h, plc/NetInfo1.c, plc/NetInfo2.c, plc/HostActionResponse.c):
 *
 *   header, MMV 0 (no FMI):  0 ODA[6] | 6 OSA[6] | 12 0x88E1 | 14 MMV=0 | 15 MMTYPE u16 LE | 17 OUI 00:B0:52 | 20 body
 *   header, MMV 1 (with FMI):                                 14 MMV=1 | 15 MMTYPE | 17 FMSN | 18 FMID | 19 OUI | 22 body
 *
 *   VS_HST_ACTION.IND 0xA062 (modem→host): 0 HOST_ACTION_REQ, 1 SESSION_ID, 2 OUTSTANDING_RETRIES u16, 4 RETRY_TIMER_10MS u16
 *   VS_HST_ACTION.RSP 0xA063 (host→modem): 0 MSTATUS (0 = done), 1 HOST_ACTION_REQ, 2 SESSION_ID, 3 OUTSTANDING_RETRIES u16
 *   VS_NW_INFO.REQ    0xA038 (host→modem): no body
 *   VS_NW_INFO.CNF    0xA039 (modem→host), MMV 0 (NetInfo1):
 *       0 NUMAVLNS, then per AVLN: NID[7] SNID TEI ROLE CCO_MAC[6] CCO_TEI NUMSTAS (18 bytes),
 *       then per station: MAC[6] TEI BDA[6] AVG_PHY_TX AVG_PHY_RX (15 bytes)
 *   VS_NW_INFO.CNF, MMV 1 (NetInfo2, AR7400 and later, i.e. QCA7000):
 *       0 SUB_VERSION, 1 RSVD, 2 DATA_LEN u16, 4 RSVD, 5 NUMAVLNS, then per AVLN: NID[7] RSVD[2] SNID TEI RSVD[4] ROLE
 *       CCO_MAC[6] CCO_TEI RSVD[3] NUMSTAS RSVD[5] (32 bytes), then per station: MAC[6] TEI RSVD[3] BDA[6] AVG_PHY_TX u16
 *       COUPLING RSVD AVG_PHY_RX u16 RSVD[2] (24 bytes)
 *
 * Like the SLAC codec: exact encoders, liberal decoders that never throw and never allocate beyond the frame
 * (NUMAVLNS/NUMSTAS are read and bounded by the frame, DATA_LEN is not demanded, reserved bytes are not checked).
 */
export interface NwInfoStation {
  /** The station's own (modem) MAC. */
  mac: Mac;
  tei: number;
  /** First host bridged by that station: the charger's SLAC host behind its modem. */
  bda: Mac;
  avgPhyTxMbps: number;
  avgPhyRxMbps: number;
}

export interface NwInfoAvln {
  nid: Uint8Array;
  snid: number;
  /** Our modem's TEI in that AVLN. */
  tei: number;
  /** 0 station, 1 proxy coordinator, 2 central coordinator (CCo). */
  role: number;
  ccoMac: Mac;
  ccoTei: number;
  /** The other stations of the AVLN. */
  stations: NwInfoStation[];
}

export type QcaMessage =
  | { type: 'VS_HST_ACTION.IND'; action: number; sessionId: number; outstandingRetries: number; retryTimer10ms: number }
  | { type: 'VS_HST_ACTION.RSP'; status: number; action: number; sessionId: number; outstandingRetries: number }
  | { type: 'VS_NW_INFO.REQ' }
  | { type: 'VS_NW_INFO.CNF'; avlns: NwInfoAvln[] };

export type QcaMessageType = QcaMessage['type'];
export type QcaMessageOf<T extends QcaMessageType> = Extract<QcaMessage, { type: T }>;

export interface QcaFrame<M extends QcaMessage = QcaMessage> {
  dst: Mac;
  src: Mac;
  /** 0: AV 1.0 header (no FMI); 1: AV 1.1 / Green PHY header with FMSN/FMID. */
  mmv: 0 | 1;
  message: M;
}

const TYPE_TO_MMTYPE: Record<QcaMessageType, number> = {
  'VS_HST_ACTION.IND': VS_MMTYPE.VS_HST_ACTION_IND,
  'VS_HST_ACTION.RSP': VS_MMTYPE.VS_HST_ACTION_RSP,
  'VS_NW_INFO.REQ': VS_MMTYPE.VS_NW_INFO_REQ,
  'VS_NW_INFO.CNF': VS_MMTYPE.VS_NW_INFO_CNF,
};
const MMTYPE_TO_TYPE = new Map<number, QcaMessageType>(Object.entries(TYPE_TO_MMTYPE).map(([k, v]) => [v, k as QcaMessageType]));

const MIN_FRAME = 60;
const AVLN1 = 18;
const STA1 = 15;
const AVLN2 = 32;
const STA2 = 24;

/** True when the frame is a HomePlug MME in the vendor-specific range (MMTYPE 0xA000–0xBFFF). */
export function isVendorMme(bytes: Uint8Array): boolean {
  if (bytes.length < 17) return false;
  if (((bytes[12]! << 8) | bytes[13]!) !== ETHERTYPE_HOMEPLUG) return false;
  const mmtype = bytes[15]! | (bytes[16]! << 8);
  return (mmtype & 0xe000) === 0xa000;
}

/* ------------------------------------------------------------------------------------------------ encode */

/** Encodes one vendor MME with its exact layout, zero-padded to the 60-byte ethernet minimum. */
export function encodeQcaFrame(frame: QcaFrame): Uint8Array {
  const m = frame.message;
  if (frame.dst.length !== 6 || frame.src.length !== 6) throw new RangeError('MAC addresses are 6 bytes');
  const body: number[] = [];
  const u16 = (v: number) => body.push(v & 0xff, (v >> 8) & 0xff);
  switch (m.type) {
    case 'VS_HST_ACTION.IND':
      body.push(m.action & 0xff, m.sessionId & 0xff);
      u16(m.outstandingRetries);
      u16(m.retryTimer10ms);
      break;
    case 'VS_HST_ACTION.RSP':
      body.push(m.status & 0xff, m.action & 0xff, m.sessionId & 0xff);
      u16(m.outstandingRetries);
      break;
    case 'VS_NW_INFO.REQ':
      break;
    case 'VS_NW_INFO.CNF': {
      if (m.avlns.length > 255) throw new RangeError('too many AVLNs');
      const data: number[] = [];
      const d16 = (v: number) => data.push(v & 0xff, (v >> 8) & 0xff);
      const draw = (b: Uint8Array, n: number, what: string) => {
        if (b.length !== n) throw new RangeError(`${what}: ${b.length} bytes, layout needs ${n}`);
        data.push(...b);
      };
      if (frame.mmv === 1) data.push(0); // RSVD before NUMAVLNS
      data.push(m.avlns.length);
      for (const a of m.avlns) {
        if (a.stations.length > 255) throw new RangeError('too many stations');
        draw(a.nid, 7, 'NID');
        if (frame.mmv === 1) data.push(0, 0);
        data.push(a.snid & 0xff, a.tei & 0xff);
        if (frame.mmv === 1) data.push(0, 0, 0, 0);
        data.push(a.role & 0xff);
        draw(a.ccoMac, 6, 'CCO_MAC');
        data.push(a.ccoTei & 0xff);
        if (frame.mmv === 1) data.push(0, 0, 0);
        data.push(a.stations.length);
        if (frame.mmv === 1) data.push(0, 0, 0, 0, 0);
        for (const s of a.stations) {
          draw(s.mac, 6, 'station MAC');
          data.push(s.tei & 0xff);
          if (frame.mmv === 1) data.push(0, 0, 0);
          draw(s.bda, 6, 'BDA');
          if (frame.mmv === 1) {
            d16(s.avgPhyTxMbps);
            data.push(0, 0); // COUPLING (primary), RSVD
            d16(s.avgPhyRxMbps);
            data.push(0, 0);
          } else {
            data.push(Math.min(255, s.avgPhyTxMbps), Math.min(255, s.avgPhyRxMbps));
          }
        }
      }
      if (frame.mmv === 1) {
        body.push(0x00, 0x00); // SUB_VERSION, RSVD
        u16(data.length);
      }
      body.push(...data);
      break;
    }
  }
  const header = frame.mmv === 1 ? 22 : 20;
  const out = new Uint8Array(Math.max(MIN_FRAME, header + body.length));
  out.set(frame.dst, 0);
  out.set(frame.src, 6);
  out[12] = ETHERTYPE_HOMEPLUG >> 8;
  out[13] = ETHERTYPE_HOMEPLUG & 0xff;
  out[14] = frame.mmv;
  const mmtype = TYPE_TO_MMTYPE[m.type];
  out[15] = mmtype & 0xff;
  out[16] = mmtype >> 8;
  // FMSN = FMID = 0 with MMV 1: a single-fragment message.
  out.set(QCA_OUI, frame.mmv === 1 ? 19 : 17);
  out.set(body, header);
  return out;
}

/* ------------------------------------------------------------------------------------------------ decode */

export type QcaDecodeResult = { ok: true; frame: QcaFrame } | { ok: false; error: SlacError };

function fail(code: SlacErrorCode, message: string, details: Record<string, unknown> = {}): QcaDecodeResult {
  return { ok: false, error: new SlacError(code, message, details) };
}

/** Minimum body bytes after the OUI. */
const MIN_BODY: Record<QcaMessageType, number> = {
  'VS_HST_ACTION.IND': 1, // HOST_ACTION_REQ is what matters; older firmware sends only version bytes after it
  'VS_HST_ACTION.RSP': 1,
  'VS_NW_INFO.REQ': 0,
  'VS_NW_INFO.CNF': 1,
};

/** Decodes one Qualcomm vendor MME. Anything unusable is a typed error (SlacError), never an exception. */
export function decodeQcaFrame(bytes: Uint8Array): QcaDecodeResult {
  if (!(bytes instanceof Uint8Array)) return fail('SLAC_DECODE_TRUNCATED', 'not a byte frame');
  if (bytes.length < 17) return fail('SLAC_DECODE_TRUNCATED', `frame of ${bytes.length} bytes is shorter than an MME header`, { length: bytes.length });
  const ethertype = (bytes[12]! << 8) | bytes[13]!;
  if (ethertype !== ETHERTYPE_HOMEPLUG) return fail('SLAC_DECODE_NOT_HOMEPLUG', `ethertype 0x${ethertype.toString(16)}`, { ethertype });
  const mmv = bytes[14]!;
  if (mmv !== 0 && mmv !== 1) return fail('SLAC_DECODE_BAD_MMV', `vendor MME with MMV ${mmv}`, { mmv });
  const mmtype = bytes[15]! | (bytes[16]! << 8);
  const type = MMTYPE_TO_TYPE.get(mmtype);
  if (!type) return fail('SLAC_DECODE_UNKNOWN_MMTYPE', `vendor MMTYPE 0x${mmtype.toString(16).padStart(4, '0')}`, { mmtype });
  const ouiAt = mmv === 1 ? 19 : 17;
  if (bytes.length < ouiAt + 3) return fail('SLAC_DECODE_TRUNCATED', `${type}: frame ends before the OUI`, { type, length: bytes.length });
  const oui = bytes.subarray(ouiAt, ouiAt + 3);
  if (!sameBytes(oui, QCA_OUI)) {
    return fail('SLAC_DECODE_BAD_FIELD', `${type}: OUI ${Array.from(oui, (b) => b.toString(16).padStart(2, '0')).join(':')} is not Qualcomm's 00:b0:52`, { type });
  }
  const body = bytes.subarray(ouiAt + 3);
  if (body.length < MIN_BODY[type]) return fail('SLAC_DECODE_TRUNCATED', `${type}: ${body.length} body bytes, need ${MIN_BODY[type]}`, { type, length: body.length });
  const u16 = (o: number) => (o + 1 < body.length ? body[o]! | (body[o + 1]! << 8) : 0);
  const dst = bytes.slice(0, 6);
  const src = bytes.slice(6, 12);
  let message: QcaMessage;
  switch (type) {
    case 'VS_HST_ACTION.IND':
      message = { type, action: body[0]!, sessionId: body[1] ?? 0, outstandingRetries: u16(2), retryTimer10ms: u16(4) };
      break;
    case 'VS_HST_ACTION.RSP':
      message = { type, status: body[0]!, action: body[1] ?? 0, sessionId: body[2] ?? 0, outstandingRetries: u16(3) };
      break;
    case 'VS_NW_INFO.REQ':
      message = { type };
      break;
    case 'VS_NW_INFO.CNF': {
      const r = mmv === 1 ? readNwInfo2(body) : readNwInfo1(body);
      if (typeof r === 'string') return fail('SLAC_DECODE_TRUNCATED', `${type}: ${r}`, { type, length: body.length });
      message = { type, avlns: r };
      break;
    }
  }
  return { ok: true, frame: { dst, src, mmv: mmv as 0 | 1, message } };
}

function readNwInfo1(body: Uint8Array): NwInfoAvln[] | string {
  const n = body[0]!;
  const avlns: NwInfoAvln[] = [];
  let o = 1;
  for (let i = 0; i < n; i++) {
    if (o + AVLN1 > body.length) return `AVLN ${i + 1} of ${n} exceeds the frame`;
    const stas = body[o + 17]!;
    const a: NwInfoAvln = {
      nid: body.slice(o, o + 7), snid: body[o + 7]!, tei: body[o + 8]!, role: body[o + 9]!, ccoMac: body.slice(o + 10, o + 16),
      ccoTei: body[o + 16]!, stations: [],
    };
    o += AVLN1;
    if (o + stas * STA1 > body.length) return `${stas} stations of AVLN ${i + 1} exceed the frame`;
    for (let s = 0; s < stas; s++, o += STA1) {
      a.stations.push({ mac: body.slice(o, o + 6), tei: body[o + 6]!, bda: body.slice(o + 7, o + 13), avgPhyTxMbps: body[o + 13]!, avgPhyRxMbps: body[o + 14]! });
    }
    avlns.push(a);
  }
  return avlns;
}

function readNwInfo2(body: Uint8Array): NwInfoAvln[] | string {
  if (body.length < 6) return 'header of the network data cut short';
  const n = body[5]!;
  const avlns: NwInfoAvln[] = [];
  let o = 6;
  const le16 = (p: number) => body[p]! | (body[p + 1]! << 8);
  for (let i = 0; i < n; i++) {
    if (o + AVLN2 > body.length) return `AVLN ${i + 1} of ${n} exceeds the frame`;
    const stas = body[o + 26]!;
    const a: NwInfoAvln = {
      nid: body.slice(o, o + 7), snid: body[o + 9]!, tei: body[o + 10]!, role: body[o + 15]!, ccoMac: body.slice(o + 16, o + 22),
      ccoTei: body[o + 22]!, stations: [],
    };
    o += AVLN2;
    if (o + stas * STA2 > body.length) return `${stas} stations of AVLN ${i + 1} exceed the frame`;
    for (let s = 0; s < stas; s++, o += STA2) {
      a.stations.push({ mac: body.slice(o, o + 6), tei: body[o + 6]!, bda: body.slice(o + 10, o + 16), avgPhyTxMbps: le16(o + 16), avgPhyRxMbps: le16(o + 20) });
    }
    avlns.push(a);
  }
  return avlns;
}

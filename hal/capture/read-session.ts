/**
 * Reads a session capture back (for `evcc session show` / `replay`): the PLC management frames, the SDP datagrams
 * and every TCP connection as its two reassembled byte streams — decrypted with the session's key log when the
 * connection is TLS. Works on the bench's reconstructed IPv6 and on a real interface's frames alike.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EvccError } from '../../core/errors.ts';
import { ETHERTYPE_HOMEPLUG } from '../plc/types.ts';
import { parseFrame, TCP_FIN, TCP_RST, TCP_SYN } from './packets.ts';
import { readPcapng, type PacketDirection } from './pcapng.ts';
import { SESSION_FILES } from './session-folder.ts';
import { decryptTlsFlow, parseKeyLog, type Chunk, type DecryptedFlow } from './tls-decrypt.ts';

export const SDP_PORT = 15118;

export interface CapturedMme {
  atUs: bigint;
  direction?: PacketDirection;
  src: string;
  dst: string;
  /** MMTYPE (u16 LE at offset 15). */
  mmtype: number;
  frame: Uint8Array;
}

export interface CapturedDatagram {
  atUs: bigint;
  direction?: PacketDirection;
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  payload: Uint8Array;
}

export interface CapturedConnection {
  /** The side that sent SYN (the EV). */
  client: { address: string; port: number };
  server: { address: string; port: number };
  openedUs: bigint;
  closedUs?: bigint;
  /** 'fin' orderly, 'reset' RST, undefined: still open at the end of the capture. */
  end?: 'fin' | 'reset';
  resetBy?: 'client' | 'server';
  tls: boolean;
  /** The streams' payload: TLS application data (decrypted) or the plain TCP bytes. */
  clientData: Chunk[];
  serverData: Chunk[];
  decryption?: Omit<DecryptedFlow, 'client' | 'server'>;
  /** A gap in the sequence space (lost capture packets): the stream after it is not used. */
  gap?: boolean;
}

export interface SessionCaptureContents {
  interfaces: { name: string; description: string }[];
  packets: number;
  firstUs?: bigint;
  mmes: CapturedMme[];
  datagrams: CapturedDatagram[];
  connections: CapturedConnection[];
  keyLog: boolean;
}

const mac = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':');

interface Side {
  next?: number;
  chunks: Chunk[];
  fin: boolean;
}

export async function readSessionCapture(dir: string): Promise<SessionCaptureContents> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(join(dir, SESSION_FILES.pcap)));
  } catch (err) {
    throw new EvccError('CAPTURE_INVALID', `no capture ${join(dir, SESSION_FILES.pcap)}`, { dir }, { cause: err });
  }
  const keyText = await readFile(join(dir, SESSION_FILES.keyLog), 'utf8').catch(() => undefined);
  return parseSessionCapture(bytes, keyText);
}

export function parseSessionCapture(bytes: Uint8Array, keyText?: string): SessionCaptureContents {
  const file = readPcapng(bytes);
  const out: SessionCaptureContents = {
    interfaces: file.interfaces.map((i) => ({ name: i.name, description: i.description })), packets: file.packets.length,
    mmes: [], datagrams: [], connections: [], keyLog: keyText !== undefined,
  };
  const packets = [...file.packets].sort((a, b) => (a.timestampUs < b.timestampUs ? -1 : a.timestampUs > b.timestampUs ? 1 : 0));
  out.firstUs = packets[0]?.timestampUs;
  const flows = new Map<string, { conn: CapturedConnection; sides: Record<'client' | 'server', Side> }>();
  for (const p of packets) {
    const f = parseFrame(p.data);
    if (!f) continue;
    const dir = p.direction ? { direction: p.direction } : {};
    if (f.ethertype === ETHERTYPE_HOMEPLUG && f.payload.length >= 5) {
      out.mmes.push({ atUs: p.timestampUs, ...dir, src: mac(f.src), dst: mac(f.dst), mmtype: f.payload[1]! | (f.payload[2]! << 8), frame: p.data });
      continue;
    }
    const ip = f.ipv6;
    if (!ip) continue;
    if (ip.udp) {
      out.datagrams.push({ atUs: p.timestampUs, ...dir, src: ip.src, dst: ip.dst, srcPort: ip.udp.srcPort, dstPort: ip.udp.dstPort, payload: ip.udp.payload });
      continue;
    }
    const t = ip.tcp;
    if (!t) continue;
    const a = `${ip.src}|${t.srcPort}|${ip.dst}|${t.dstPort}`;
    const b = `${ip.dst}|${t.dstPort}|${ip.src}|${t.srcPort}`;
    let flow = flows.get(a) ?? flows.get(b);
    if (!flow && t.flags & TCP_SYN && !(t.flags & 0x10)) {
      const conn: CapturedConnection = {
        client: { address: ip.src, port: t.srcPort }, server: { address: ip.dst, port: t.dstPort }, openedUs: p.timestampUs,
        tls: false, clientData: [], serverData: [],
      };
      flow = { conn, sides: { client: { chunks: [], fin: false }, server: { chunks: [], fin: false } } };
      flows.set(a, flow);
      out.connections.push(conn);
    }
    if (!flow) continue; // a connection that began before the capture
    const from: 'client' | 'server' = flow.conn.client.address === ip.src && flow.conn.client.port === t.srcPort ? 'client' : 'server';
    const side = flow.sides[from];
    if (t.flags & TCP_SYN) {
      side.next = (t.seq + 1) >>> 0;
      continue;
    }
    if (t.flags & TCP_RST) {
      flow.conn.end = 'reset';
      flow.conn.resetBy = from;
      flow.conn.closedUs = p.timestampUs;
      continue;
    }
    if (t.payload.length > 0 && side.next !== undefined && !flow.conn.gap) {
      const delta = (t.seq - side.next) | 0;
      if (delta > 0) flow.conn.gap = true;
      else if (-delta < t.payload.length) {
        const fresh = t.payload.subarray(-delta);
        side.chunks.push({ atUs: p.timestampUs, bytes: Uint8Array.from(fresh) });
        side.next = (side.next + fresh.length) >>> 0;
      }
    }
    if (t.flags & TCP_FIN) {
      side.fin = true;
      if (flow.sides.client.fin && flow.sides.server.fin) {
        flow.conn.end ??= 'fin';
        flow.conn.closedUs ??= p.timestampUs;
      }
    }
  }
  const keys = keyText !== undefined ? parseKeyLog(keyText) : undefined;
  for (const { conn, sides } of flows.values()) {
    const first = sides.client.chunks[0]?.bytes[0];
    conn.tls = first === 0x16;
    if (!conn.tls) {
      conn.clientData = sides.client.chunks;
      conn.serverData = sides.server.chunks;
      continue;
    }
    const d = decryptTlsFlow(sides.client.chunks, sides.server.chunks, keys);
    conn.clientData = d.client;
    conn.serverData = d.server;
    conn.decryption = { alerts: d.alerts, ...(d.version ? { version: d.version } : {}), ...(d.suite ? { suite: d.suite } : {}), ...(d.problem ? { problem: d.problem } : {}) };
  }
  return out;
}

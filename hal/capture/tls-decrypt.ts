/**
 * Decrypts the application data of a captured TLS connection with an NSS key log (what `evcc session show` needs to
 * show the V2G messages of a TLS session without Wireshark). Covers the suites ISO 15118 uses:
 *  - TLS 1.2 (CLIENT_RANDOM <cr> <master secret>): ECDHE-ECDSA-AES128-SHA256 (CBC + HMAC, RFC 5246 §6.2.3.2) and
 *    the AES-GCM suites (RFC 5288);
 *  - TLS 1.3 (CLIENT/SERVER_HANDSHAKE_TRAFFIC_SECRET, CLIENT/SERVER_TRAFFIC_SECRET_0): TLS_AES_128/256_GCM (RFC 8446 §5.2).
 * MACs and AEAD tags are checked: a record that does not verify is reported, never returned as data.
 */
import { createDecipheriv, createHmac } from 'node:crypto';
import { RECORD_APPLICATION_DATA, RECORD_CHANGE_CIPHER_SPEC, RECORD_HANDSHAKE, RecordSplitter, recordNonce, trafficKeys } from '../net/tls-records.ts';

export interface KeyLog {
  /** client_random (hex) → label → secret. */
  byClientRandom: Map<string, Map<string, Uint8Array>>;
}

export function parseKeyLog(text: string): KeyLog {
  const byClientRandom = new Map<string, Map<string, Uint8Array>>();
  for (const line of text.split('\n')) {
    const m = /^([A-Z_0-9]+) ([0-9a-fA-F]{64}) ([0-9a-fA-F]+)\s*$/.exec(line.trim());
    if (!m) continue;
    const cr = m[2]!.toLowerCase();
    const entry = byClientRandom.get(cr) ?? new Map<string, Uint8Array>();
    entry.set(m[1]!, new Uint8Array(Buffer.from(m[3]!, 'hex')));
    byClientRandom.set(cr, entry);
  }
  return { byClientRandom };
}

export interface Chunk {
  atUs: bigint;
  bytes: Uint8Array;
}

export interface DecryptedFlow {
  version?: 'TLSv1.2' | 'TLSv1.3';
  suite?: string;
  /** Application data per direction, one entry per record, with the time of the packet that completed it. */
  client: Chunk[];
  server: Chunk[];
  /** Alerts seen (in clear or decrypted). */
  alerts: { from: 'client' | 'server'; atUs: bigint; level: number; description: number }[];
  /** Why (part of) the flow could not be decrypted; absent when everything decrypted. */
  problem?: string;
}

const TLS12_SUITES: Record<number, { name: string; mode: 'cbc' | 'gcm'; cipher: string; keyLength: number; macLength: number; hash: 'sha256' | 'sha384' }> = {
  0xc023: { name: 'ECDHE-ECDSA-AES128-SHA256', mode: 'cbc', cipher: 'aes-128-cbc', keyLength: 16, macLength: 32, hash: 'sha256' },
  0xc027: { name: 'ECDHE-RSA-AES128-SHA256', mode: 'cbc', cipher: 'aes-128-cbc', keyLength: 16, macLength: 32, hash: 'sha256' },
  0xc02b: { name: 'ECDHE-ECDSA-AES128-GCM-SHA256', mode: 'gcm', cipher: 'aes-128-gcm', keyLength: 16, macLength: 0, hash: 'sha256' },
  0xc02c: { name: 'ECDHE-ECDSA-AES256-GCM-SHA384', mode: 'gcm', cipher: 'aes-256-gcm', keyLength: 32, macLength: 0, hash: 'sha384' },
  0xc02f: { name: 'ECDHE-RSA-AES128-GCM-SHA256', mode: 'gcm', cipher: 'aes-128-gcm', keyLength: 16, macLength: 0, hash: 'sha256' },
};
const TLS13_SUITE_NAMES: Record<number, string> = { 0x1301: 'TLS_AES_128_GCM_SHA256', 0x1302: 'TLS_AES_256_GCM_SHA384', 0x1303: 'TLS_CHACHA20_POLY1305_SHA256' };

/** TLS 1.2 PRF (RFC 5246 §5) with the suite's hash. */
function prf(hash: 'sha256' | 'sha384', secret: Uint8Array, label: string, seed: Uint8Array, length: number): Uint8Array {
  const labelSeed = Buffer.concat([Buffer.from(label, 'ascii'), seed]);
  const out: Buffer[] = [];
  let a: Buffer = createHmac(hash, secret).update(labelSeed).digest();
  let n = 0;
  while (n < length) {
    const block = createHmac(hash, secret).update(a).update(labelSeed).digest();
    out.push(block);
    n += block.length;
    a = createHmac(hash, secret).update(a).digest();
  }
  return new Uint8Array(Buffer.concat(out).subarray(0, length));
}

interface DirectionState {
  encrypted: boolean;
  seq: number;
  key?: { cipher: string; key: Uint8Array; iv: Uint8Array; macKey?: Uint8Array };
  /** TLS 1.3: still under the handshake traffic secret. */
  handshakePhase?: boolean;
}

const u16 = (b: Uint8Array, o: number): number => (b[o]! << 8) | b[o + 1]!;

function seqBytes(seq: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(seq));
  return b;
}

/**
 * `client`/`server`: the two byte streams of one TCP connection, as timed chunks in order. Returns the decrypted
 * application data, or the reason it could not be decrypted (no key for this connection, unsupported suite).
 */
export function decryptTlsFlow(client: Chunk[], server: Chunk[], keys: KeyLog | undefined): DecryptedFlow {
  const out: DecryptedFlow = { client: [], server: [], alerts: [] };
  let clientRandom: Uint8Array | undefined;
  let serverRandom: Uint8Array | undefined;
  let suiteId: number | undefined;
  let tls13 = false;
  // RFC 7366 encrypt_then_mac (OpenSSL negotiates it for CBC suites): the MAC covers the ciphertext and follows it.
  let encryptThenMac = false;
  const state: Record<'client' | 'server', DirectionState> = { client: { encrypted: false, seq: 0 }, server: { encrypted: false, seq: 0 } };
  // Records in arrival order across both directions (the key schedule needs ServerHello before the client's CCS).
  const records: { from: 'client' | 'server'; atUs: bigint; type: number; bytes: Uint8Array; fragment: Uint8Array }[] = [];
  for (const [from, chunks] of [['client', client], ['server', server]] as const) {
    const splitter = new RecordSplitter();
    try {
      for (const c of chunks) for (const r of splitter.push(c.bytes)) records.push({ from, atUs: c.atUs, ...r });
    } catch (err) {
      out.problem = `${from} stream is not TLS: ${(err as Error).message}`;
      return out;
    }
  }
  records.sort((a, b) => (a.atUs < b.atUs ? -1 : a.atUs > b.atUs ? 1 : 0));

  const secrets = (): Map<string, Uint8Array> | undefined => (clientRandom ? keys?.byClientRandom.get(Buffer.from(clientRandom).toString('hex')) : undefined);

  const armTls12 = (): boolean => {
    const p = suiteId !== undefined ? TLS12_SUITES[suiteId] : undefined;
    const master = secrets()?.get('CLIENT_RANDOM');
    if (!p) {
      out.problem ??= `TLS 1.2 suite 0x${(suiteId ?? 0).toString(16)} not supported by the decoder`;
      return false;
    }
    if (!master || !clientRandom || !serverRandom) {
      out.problem ??= 'no key log entry (CLIENT_RANDOM) for this connection';
      return false;
    }
    const ivLength = p.mode === 'gcm' ? 4 : 16;
    const kb = prf(p.hash, master, 'key expansion', Buffer.concat([serverRandom, clientRandom]), 2 * (p.macLength + p.keyLength + ivLength));
    let o = 0;
    const take = (n: number) => kb.subarray(o, (o += n));
    const cMac = take(p.macLength);
    const sMac = take(p.macLength);
    const cKey = take(p.keyLength);
    const sKey = take(p.keyLength);
    const cIv = take(ivLength);
    const sIv = take(ivLength);
    state.client.key = { cipher: p.cipher, key: cKey, iv: cIv, macKey: cMac };
    state.server.key = { cipher: p.cipher, key: sKey, iv: sIv, macKey: sMac };
    return true;
  };

  const tls13Keys = (from: 'client' | 'server', phase: 'handshake' | 'application'): DirectionState['key'] => {
    const label = phase === 'handshake' ? `${from.toUpperCase()}_HANDSHAKE_TRAFFIC_SECRET` : `${from.toUpperCase()}_TRAFFIC_SECRET_0`;
    const secret = secrets()?.get(label);
    const name = suiteId !== undefined ? TLS13_SUITE_NAMES[suiteId] : undefined;
    if (!secret || !name) {
      out.problem ??= !name ? `TLS 1.3 suite 0x${(suiteId ?? 0).toString(16)} not supported` : `no key log entry (${label}) for this connection`;
      return undefined;
    }
    return trafficKeys(name, secret);
  };

  const decrypt12 = (st: DirectionState, type: number, fragment: Uint8Array): Uint8Array | undefined => {
    const k = st.key;
    const p = suiteId !== undefined ? TLS12_SUITES[suiteId] : undefined;
    if (!k || !p) return undefined;
    const seq = st.seq++;
    if (p.mode === 'cbc' && encryptThenMac) {
      const body = fragment.subarray(0, fragment.length - p.macLength);
      if (body.length < 32 || body.length % 16 !== 0) return undefined;
      const header = Buffer.from([type, 0x03, 0x03, body.length >> 8, body.length & 0xff]);
      const want = createHmac(p.hash, k.macKey!).update(seqBytes(seq)).update(header).update(body).digest();
      if (Buffer.compare(want, fragment.subarray(body.length)) !== 0) return undefined;
      const d = createDecipheriv(k.cipher, k.key, body.subarray(0, 16));
      d.setAutoPadding(false);
      const plain = Buffer.concat([d.update(body.subarray(16)), d.final()]);
      const end = plain.length - plain[plain.length - 1]! - 1;
      return end >= 0 ? new Uint8Array(plain.subarray(0, end)) : undefined;
    }
    if (p.mode === 'cbc') {
      if (fragment.length < 32 || fragment.length % 16 !== 0) return undefined;
      const d = createDecipheriv(k.cipher, k.key, fragment.subarray(0, 16));
      d.setAutoPadding(false);
      const plain = Buffer.concat([d.update(fragment.subarray(16)), d.final()]);
      const pad = plain[plain.length - 1]!;
      const end = plain.length - pad - 1 - p.macLength;
      if (end < 0) return undefined;
      const content = plain.subarray(0, end);
      const mac = plain.subarray(end, end + p.macLength);
      const header = Buffer.from([type, 0x03, 0x03, content.length >> 8, content.length & 0xff]);
      const want = createHmac(p.hash, k.macKey!).update(seqBytes(seq)).update(header).update(content).digest();
      return Buffer.compare(want, mac) === 0 ? new Uint8Array(content) : undefined;
    }
    if (fragment.length < 8 + 16) return undefined;
    const nonce = Buffer.concat([k.iv, fragment.subarray(0, 8)]);
    const body = fragment.subarray(8, fragment.length - 16);
    const d = createDecipheriv(k.cipher as 'aes-128-gcm', k.key, nonce, { authTagLength: 16 });
    d.setAAD(Buffer.concat([seqBytes(seq), Buffer.from([type, 0x03, 0x03, body.length >> 8, body.length & 0xff])]));
    d.setAuthTag(fragment.subarray(fragment.length - 16));
    try {
      return new Uint8Array(Buffer.concat([d.update(body), d.final()]));
    } catch {
      return undefined;
    }
  };

  const decrypt13 = (st: DirectionState, header: Uint8Array, fragment: Uint8Array): { type: number; content: Uint8Array } | undefined => {
    const k = st.key;
    if (!k || fragment.length < 17) return undefined;
    const d = createDecipheriv(k.cipher as 'aes-128-gcm', k.key, recordNonce(k.iv, st.seq++), { authTagLength: 16 });
    d.setAAD(header);
    d.setAuthTag(fragment.subarray(fragment.length - 16));
    let inner: Buffer;
    try {
      inner = Buffer.concat([d.update(fragment.subarray(0, fragment.length - 16)), d.final()]);
    } catch {
      return undefined;
    }
    let end = inner.length - 1;
    while (end >= 0 && inner[end] === 0) end--;
    if (end < 0) return undefined;
    return { type: inner[end]!, content: new Uint8Array(inner.subarray(0, end)) };
  };

  for (const r of records) {
    const st = state[r.from];
    if (!st.encrypted) {
      if (r.type === RECORD_HANDSHAKE) {
        const hsType = r.fragment[0];
        if (hsType === 1 && r.fragment.length >= 38) clientRandom = r.fragment.slice(6, 38);
        if (hsType === 2 && r.fragment.length >= 38) {
          serverRandom = r.fragment.slice(6, 38);
          const sidLen = r.fragment[38]!;
          suiteId = u16(r.fragment, 39 + sidLen);
          const ext = serverHelloExtensions(r.fragment, 39 + sidLen + 3);
          const versions = ext.get(43);
          tls13 = versions?.length === 2 && u16(versions, 0) === 0x0304;
          encryptThenMac = ext.has(22);
          out.version = tls13 ? 'TLSv1.3' : 'TLSv1.2';
          out.suite = tls13 ? TLS13_SUITE_NAMES[suiteId] ?? `0x${suiteId.toString(16)}` : TLS12_SUITES[suiteId]?.name ?? `0x${suiteId.toString(16)}`;
          if (tls13) {
            for (const side of ['client', 'server'] as const) {
              state[side].encrypted = true;
              state[side].handshakePhase = true;
              const k = tls13Keys(side, 'handshake');
              if (k) state[side].key = k;
            }
          }
        }
      } else if (r.type === RECORD_CHANGE_CIPHER_SPEC && !tls13) {
        st.encrypted = true;
        if (!state.client.key && !armTls12()) continue;
      } else if (r.type === 21 && r.fragment.length >= 2) {
        out.alerts.push({ from: r.from, atUs: r.atUs, level: r.fragment[0]!, description: r.fragment[1]! });
      }
      continue;
    }
    if (tls13) {
      if (r.type === RECORD_CHANGE_CIPHER_SPEC) continue; // middlebox compatibility (RFC 8446 §D.4)
      const inner = decrypt13(st, r.bytes.subarray(0, 5), r.fragment);
      if (!inner) {
        out.problem ??= st.key ? `a ${r.from} record does not verify` : out.problem;
        continue;
      }
      if (inner.type === RECORD_HANDSHAKE && st.handshakePhase && containsFinished(inner.content)) {
        st.handshakePhase = false;
        st.seq = 0;
        const k = tls13Keys(r.from, 'application');
        if (k) st.key = k;
        else delete st.key;
      } else if (inner.type === RECORD_APPLICATION_DATA) {
        out[r.from].push({ atUs: r.atUs, bytes: inner.content });
      } else if (inner.type === 21 && inner.content.length >= 2) {
        out.alerts.push({ from: r.from, atUs: r.atUs, level: inner.content[0]!, description: inner.content[1]! });
      }
      continue;
    }
    const plain = decrypt12(st, r.type, r.fragment);
    if (!plain) {
      if (st.key) out.problem ??= `a ${r.from} record does not verify`;
      continue;
    }
    if (r.type === RECORD_APPLICATION_DATA) out[r.from].push({ atUs: r.atUs, bytes: plain });
    else if (r.type === 21 && plain.length >= 2) out.alerts.push({ from: r.from, atUs: r.atUs, level: plain[0]!, description: plain[1]! });
  }
  return out;
}

/** ServerHello extensions by type (supported_versions 43, encrypt_then_mac 22, …). */
function serverHelloExtensions(f: Uint8Array, extStart: number): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  if (extStart + 2 > f.length) return out;
  const end = Math.min(f.length, extStart + 2 + u16(f, extStart));
  for (let o = extStart + 2; o + 4 <= end;) {
    const len = u16(f, o + 2);
    out.set(u16(f, o), f.subarray(o + 4, Math.min(end, o + 4 + len)));
    o += 4 + len;
  }
  return out;
}

/** A handshake record's messages include Finished (type 20). */
function containsFinished(content: Uint8Array): boolean {
  for (let o = 0; o + 4 <= content.length;) {
    if (content[o] === 20) return true;
    o += 4 + ((content[o + 1]! << 16) | (content[o + 2]! << 8) | content[o + 3]!);
  }
  return false;
}

/** Raw MQTT 3.1.1 packets for tests that must send what no well-behaved client or broker would (oversized PUBLISH). */

/** MQTT remaining-length varint. */
export function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/** The fixed header, remaining length and topic of a QoS 0 PUBLISH announcing `payloadBytes` of payload (payload not included). */
export function publishHeader(topic: string, payloadBytes: number): Buffer {
  const t = Buffer.from(topic);
  return Buffer.concat([Buffer.from([0x30, ...varint(2 + t.length + payloadBytes), t.length >> 8, t.length & 0xff]), t]);
}

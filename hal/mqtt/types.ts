/**
 * The MQTT transport as firmware/ sees it (ARCHITECTURE.md §4): a narrow client interface so the OTA logic never
 * imports the `mqtt` package. The real implementation (`mqtt-js.ts`) uses MQTT.js with mutual TLS; `memory.ts` is an
 * in-process bus for unit tests in virtual time. Payloads are bytes; the OTA layer does its own framing (JSON with a
 * size cap) so the same code runs on MQTT 3.1.1 (aedes) and MQTT 5 (mosquitto).
 */
export type MqttQos = 0 | 1;

/** Incoming packet cap of a client that names none: far above every OTA message, far below MQTT's 256 MiB. */
export const MQTT_DEFAULT_MAX_PACKET_BYTES = 256 * 1024;

/** Connection state as the link layer reports it; `offline` means no session right now (a reconnect is pending). */
export type MqttLinkStatus = 'connecting' | 'connected' | 'offline' | 'closed';

export interface MqttWill {
  topic: string;
  payload: Uint8Array | string;
  qos: MqttQos;
  retain: boolean;
}

export interface MqttTlsIdentity {
  /** PEM of the CA(s) that sign the broker's certificate. */
  ca: string | Uint8Array;
  /** PEM client certificate chain (per vehicle / per backend instance) for mutual TLS. */
  cert: string | Uint8Array;
  /** PEM PKCS#8 private key of `cert`, preferably encrypted (then `passphrase`); kept in memory only. */
  key: string | Uint8Array;
  /**
   * Passphrase of an encrypted `key`. On the vehicle it is unsealed from the TPM at start (Node's TLS cannot use a
   * TPM-resident key, PLATFORM.md), so the key file on disk is never plaintext.
   */
  passphrase?: string;
}

export interface MqttConnectOptions {
  /** `mqtts://host:port` (mutual TLS) or `mqtt://host:port` (plain, embedded bench broker on loopback only). */
  url: string;
  clientId: string;
  /** 4 = MQTT 3.1.1, 5 = MQTT 5.0. */
  protocolVersion: 4 | 5;
  tls?: MqttTlsIdentity;
  will?: MqttWill;
  keepaliveSeconds?: number;
  /** Delay between reconnect attempts; 0 disables reconnecting. */
  reconnectPeriodMs?: number;
  connectTimeoutMs?: number;
  /** false = persistent session (QoS 1 subscriptions and in-flight messages survive a reconnect). */
  cleanSession?: boolean;
  /**
   * Largest packet this client accepts (default MQTT_DEFAULT_MAX_PACKET_BYTES). MQTT 5 announces it in CONNECT (the
   * broker must not send more); on both versions a larger incoming packet drops the connection at its fixed header,
   * before its payload is buffered, and is never delivered.
   */
  maxPacketBytes?: number;
}

export interface MqttMessage {
  topic: string;
  payload: Uint8Array;
  retain: boolean;
}

export interface MqttPublishResult {
  /** MQTT 5 PUBACK reason code when the broker sent one (135 = not authorized); undefined on 3.1.1. */
  reasonCode?: number;
}

export interface MqttClient {
  readonly clientId: string;
  readonly status: MqttLinkStatus;
  /**
   * Publishes and resolves when the broker acknowledged (QoS 1) or the packet was written (QoS 0). While offline,
   * QoS 1 messages are queued and sent on reconnect. Rejects when the client is closed.
   */
  publish(topic: string, payload: Uint8Array | string, options: { qos: MqttQos; retain?: boolean }): Promise<MqttPublishResult>;
  /** Resolves with the granted QoS per filter; 128 (0x80) or ≥ 0x80 means the broker refused that filter. */
  subscribe(filters: string[], qos: MqttQos): Promise<number[]>;
  unsubscribe(filters: string[]): Promise<void>;
  /** Registers a message handler; returns the function that removes it. */
  onMessage(handler: (message: MqttMessage) => void): () => void;
  /** Registers a status handler (every transition, with the transport error when there is one). */
  onStatus(handler: (status: MqttLinkStatus, error?: Error) => void): () => void;
  /** Closes the session (sends DISCONNECT when connected, so the last will is NOT published). */
  close(): Promise<void>;
  /** Drops the connection without DISCONNECT (the broker publishes the last will); for tests of abrupt loss. */
  destroy(): Promise<void>;
}

export interface MqttConnector {
  /** Starts a client; it connects (and reconnects) in the background. Never throws for an unreachable broker. */
  connect(options: MqttConnectOptions): MqttClient;
}

/** Size of a PUBLISH packet on the wire (3.1.1, QoS 1; MQTT 5 adds its properties): what the size caps compare. */
export function mqttPublishPacketBytes(topic: string, payloadBytes: number): number {
  const body = 2 + new TextEncoder().encode(topic).byteLength + 2 + payloadBytes;
  const lengthBytes = body < 128 ? 1 : body < 16_384 ? 2 : body < 2_097_152 ? 3 : 4;
  return 1 + lengthBytes + body;
}

/** An MQTT 5 shared subscription (§4.8.2): `$share/<group>/<filter>`; messages still arrive on their real topic. */
export function sharedFilter(group: string, filter: string): string {
  return `$share/${group}/${filter}`;
}

/** The group and filter of a `$share/<group>/<filter>` subscription; undefined for an ordinary filter. */
export function parseSharedFilter(filter: string): { group: string; filter: string } | undefined {
  const m = /^\$share\/([^/+#]+)\/(.+)$/.exec(filter);
  return m ? { group: m[1]!, filter: m[2]! } : undefined;
}

/** MQTT topic filter match (`+` one level, `#` rest); used by simulated brokers and routing. */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return i === f.length - 1;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

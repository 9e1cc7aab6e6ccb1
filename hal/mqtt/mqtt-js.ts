import type { Duplex } from 'node:stream';
import mqtt from 'mqtt';
import { EvccError } from '../../core/errors.ts';
import { PacketSizeLimitedStream } from './packet-size.ts';
import {
  MQTT_DEFAULT_MAX_PACKET_BYTES,
  type MqttClient, type MqttConnectOptions, type MqttConnector, type MqttLinkStatus, type MqttMessage, type MqttPublishResult, type MqttQos,
} from './types.ts';

/**
 * The real MQTT transport: MQTT.js over TLS (mutual authentication with the per-vehicle certificate) or plain TCP
 * (the embedded loopback broker of the bench). The client reconnects on its own; QoS 1 publishes made while offline
 * are queued by MQTT.js and resent after reconnect. Incoming packets are capped at their fixed header
 * (packet-size.ts): MQTT.js itself would buffer a packet whole before its MQTT 5 `maximumPacketSize` check.
 */
export class MqttJsConnector implements MqttConnector {
  connect(options: MqttConnectOptions): MqttClient {
    return new MqttJsClient(options);
  }
}

/** Checks a broker URL: `mqtt://` or `mqtts://`, a host, a valid port. CONFIG_INVALID otherwise. */
export function parseBrokerUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new EvccError('CONFIG_INVALID', `broker URL "${url}" is not a URL (mqtts://host:port or mqtt://127.0.0.1:port)`, { url });
  }
  if (u.protocol !== 'mqtt:' && u.protocol !== 'mqtts:') {
    throw new EvccError('CONFIG_INVALID', `broker URL "${url}" must start with mqtts:// or mqtt://`, { url });
  }
  if (!u.hostname) throw new EvccError('CONFIG_INVALID', `broker URL "${url}" names no host`, { url });
  if (u.port === '0') throw new EvccError('CONFIG_INVALID', `broker URL "${url}" has port 0`, { url });
  return u;
}

function toBuffer(v: Uint8Array | string): Buffer {
  return typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

type StreamBuilder = (client: mqtt.MqttClient) => Duplex;

class MqttJsClient implements MqttClient {
  readonly clientId: string;
  private current: MqttLinkStatus = 'connecting';
  private readonly client: mqtt.MqttClient;
  private readonly messageHandlers = new Set<(m: MqttMessage) => void>();
  private readonly statusHandlers = new Set<(s: MqttLinkStatus, e?: Error) => void>();
  private closed = false;

  constructor(options: MqttConnectOptions) {
    this.clientId = options.clientId;
    parseBrokerUrl(options.url);
    const tls = options.tls;
    const maxPacketBytes = options.maxPacketBytes ?? MQTT_DEFAULT_MAX_PACKET_BYTES;
    this.client = mqtt.connect(options.url, {
      // The stream builder is wrapped below before the first connect.
      manualConnect: true,
      clientId: options.clientId,
      protocolVersion: options.protocolVersion,
      clean: options.cleanSession ?? true,
      keepalive: options.keepaliveSeconds ?? 30,
      reconnectPeriod: options.reconnectPeriodMs ?? 1000,
      connectTimeout: options.connectTimeoutMs ?? 5000,
      // Never downgrade: the broker certificate is verified against the configured CA, the client presents its own.
      ...(tls ? { ca: toBuffer(tls.ca), cert: toBuffer(tls.cert), key: toBuffer(tls.key), rejectUnauthorized: true, ...(tls.passphrase ? { passphrase: tls.passphrase } : {}) } : {}),
      ...(options.will
        ? { will: { topic: options.will.topic, payload: toBuffer(options.will.payload), qos: options.will.qos, retain: options.will.retain } }
        : {}),
      // Resubscribe after a reconnect when the session was not kept.
      resubscribe: true,
      ...(options.protocolVersion === 5 ? { properties: { maximumPacketSize: maxPacketBytes } } : {}),
    });
    const internals = this.client as unknown as { streamBuilder: StreamBuilder };
    const build = internals.streamBuilder;
    internals.streamBuilder = (client) => {
      const socket = build(client);
      // Request/answer packets are small: send them at once instead of waiting for Nagle (+ delayed ACK, ~40 ms).
      (socket as unknown as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
      return new PacketSizeLimitedStream(socket, maxPacketBytes);
    };
    this.client.on('connect', () => this.setStatus('connected'));
    this.client.on('reconnect', () => this.setStatus('connecting'));
    this.client.on('offline', () => this.setStatus('offline'));
    this.client.on('close', () => {
      if (this.current === 'connected') this.setStatus('offline');
    });
    this.client.on('error', (err) => this.setStatus(this.closed ? 'closed' : 'offline', err));
    this.client.on('end', () => this.setStatus('closed'));
    this.client.on('message', (topic, payload, packet) => {
      const message: MqttMessage = { topic, payload: new Uint8Array(payload), retain: packet.retain };
      for (const h of this.messageHandlers) h(message);
    });
    this.client.connect();
  }

  get status(): MqttLinkStatus {
    return this.current;
  }

  private setStatus(status: MqttLinkStatus, error?: Error): void {
    if (status === this.current && !error) return;
    this.current = status;
    for (const h of this.statusHandlers) h(status, error);
  }

  async publish(topic: string, payload: Uint8Array | string, options: { qos: MqttQos; retain?: boolean }): Promise<MqttPublishResult> {
    if (this.closed) throw new Error('MQTT client closed');
    try {
      const packet = await this.client.publishAsync(topic, toBuffer(payload), { qos: options.qos, retain: options.retain ?? false });
      const rc = (packet as { reasonCode?: number } | undefined)?.reasonCode;
      return rc === undefined ? {} : { reasonCode: rc };
    } catch (err) {
      // MQTT 5: a PUBACK with a failure reason (e.g. 135 not authorized) is an answer, not a transport error.
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'number') return { reasonCode: code };
      throw err;
    }
  }

  async subscribe(filters: string[], qos: MqttQos): Promise<number[]> {
    // MQTT.js answers a subscribe made while offline with an empty grant list; wait for the session instead, so
    // the grant list always is the broker's answer (the caller's own deadline bounds the wait).
    await this.connected();
    // `resubscribe: true` forces a real SUBSCRIBE even for a filter MQTT.js already tracks (it would otherwise skip
    // it and return no grant), so the result always is the broker's answer.
    const map = Object.fromEntries(filters.map((f) => [f, { qos }])) as Record<string, { qos: MqttQos }>;
    try {
      const granted = await this.client.subscribeAsync({ ...map, resubscribe: true } as unknown as Parameters<mqtt.MqttClient['subscribeAsync']>[0]);
      return filters.map((f) => granted.find((g) => g.topic === f)?.qos ?? 128);
    } catch (err) {
      // MQTT.js rejects when the SUBACK refuses any filter; that is an answer (per-filter grants), not a failure.
      const granted = (err as { packet?: { granted?: unknown[] } }).packet?.granted;
      if (!Array.isArray(granted)) throw err;
      return filters.map((_, i) => {
        const g = granted[i];
        return typeof g === 'number' ? g : typeof (g as { qos?: unknown })?.qos === 'number' ? (g as { qos: number }).qos : 128;
      });
    }
  }

  private connected(): Promise<void> {
    if (this.current === 'connected') return Promise.resolve();
    if (this.closed) return Promise.reject(new Error('MQTT client closed'));
    return new Promise((resolve, reject) => {
      const off = this.onStatus((s) => {
        if (s === 'connected') {
          off();
          resolve();
        } else if (s === 'closed') {
          off();
          reject(new Error('MQTT client closed'));
        }
      });
    });
  }

  async unsubscribe(filters: string[]): Promise<void> {
    await this.client.unsubscribeAsync(filters);
  }

  onMessage(handler: (m: MqttMessage) => void): () => void {
    this.messageHandlers.add(handler);
    return () => this.messageHandlers.delete(handler);
  }

  onStatus(handler: (s: MqttLinkStatus, e?: Error) => void): () => void {
    this.statusHandlers.add(handler);
    return () => this.statusHandlers.delete(handler);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // A graceful DISCONNECT only makes sense on a live session; otherwise stop the reconnect loop at once.
    await this.client.endAsync(!this.client.connected).catch(() => this.client.endAsync(true));
    this.setStatus('closed');
  }

  async destroy(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Tear the socket down without DISCONNECT so the broker treats it as an abrupt loss and publishes the will.
    (this.client as unknown as { stream?: { destroy(): void } }).stream?.destroy();
    await this.client.endAsync(true);
    this.setStatus('closed');
  }
}

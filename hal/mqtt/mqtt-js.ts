import mqtt from 'mqtt';
import type {
  MqttClient, MqttConnectOptions, MqttConnector, MqttLinkStatus, MqttMessage, MqttPublishResult, MqttQos,
} from './types.ts';

/**
 * The real MQTT transport: MQTT.js over TLS (mutual authentication with the per-vehicle certificate) or plain TCP
 * (the embedded loopback broker of the bench). The client reconnects on its own; QoS 1 publishes made while offline
 * are queued by MQTT.js and resent after reconnect.
 */
export class MqttJsConnector implements MqttConnector {
  connect(options: MqttConnectOptions): MqttClient {
    return new MqttJsClient(options);
  }
}

function toBuffer(v: Uint8Array | string): Buffer {
  return typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

class MqttJsClient implements MqttClient {
  readonly clientId: string;
  private current: MqttLinkStatus = 'connecting';
  private readonly client: mqtt.MqttClient;
  private readonly messageHandlers = new Set<(m: MqttMessage) => void>();
  private readonly statusHandlers = new Set<(s: MqttLinkStatus, e?: Error) => void>();
  private closed = false;

  constructor(options: MqttConnectOptions) {
    this.clientId = options.clientId;
    const tls = options.tls;
    this.client = mqtt.connect(options.url, {
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
      ...(options.maxPacketBytes && options.protocolVersion === 5 ? { properties: { maximumPacketSize: options.maxPacketBytes } } : {}),
    });
    this.client.on('connect', () => {
      // Request/answer packets are small: send them at once instead of waiting for Nagle (+ delayed ACK, ~40 ms).
      (this.client as unknown as { stream?: { setNoDelay?: (on: boolean) => void } }).stream?.setNoDelay?.(true);
      this.setStatus('connected');
    });
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

import type {
  MqttClient, MqttConnectOptions, MqttConnector, MqttLinkStatus, MqttMessage, MqttPublishResult, MqttQos,
} from './types.ts';
import { MQTT_DEFAULT_MAX_PACKET_BYTES, mqttPublishPacketBytes, parseSharedFilter, topicMatches } from './types.ts';

/**
 * The simulated transport: an in-process broker for unit tests of the OTA logic (virtual time, no sockets).
 * Delivery is asynchronous (a microtask), retained messages and last wills are honoured, and an optional
 * `authorize` hook plays the broker ACL. `online = false` makes every client offline (broker down). Size caps as
 * on the real link: the broker refuses a PUBLISH over `maxPacketBytes` (reason 0x95, nothing routed) and a client
 * never receives a packet over its own `maxPacketBytes`. Shared subscriptions (`$share/<group>/<filter>`) give each
 * message to one connected member of the group, round robin, and no retained messages (MQTT 5 §4.8.2).
 */
export class MemoryBroker implements MqttConnector {
  private readonly clients = new Set<MemoryClient>();
  private readonly retained = new Map<string, MqttMessage>();
  private up = true;
  /** Next member per shared subscription (group + filter), round robin. */
  private readonly nextMember = new Map<string, number>();
  /** Returns false to refuse (publish silently dropped with reason 135, subscribe granted 128). */
  authorize: (clientId: string, action: 'publish' | 'subscribe', topic: string) => boolean = () => true;
  /** Every message the broker routed, for assertions. */
  readonly log: { from: string; topic: string; payload: Uint8Array }[] = [];
  /** The broker's packet cap (mosquitto max_packet_size); undefined = none. */
  maxPacketBytes: number | undefined;
  /** Packets dropped by a size cap: at the broker (`broker`) or for one receiving client (its id). */
  readonly oversized: { at: string; topic: string; bytes: number }[] = [];

  connect(options: MqttConnectOptions): MqttClient {
    const c = new MemoryClient(this, options);
    this.clients.add(c);
    queueMicrotask(() => c.linkChanged(this.up));
    return c;
  }

  get online(): boolean {
    return this.up;
  }

  set online(value: boolean) {
    this.up = value;
    for (const c of this.clients) c.linkChanged(value);
  }

  /** @internal */
  route(from: string, message: MqttMessage): void {
    this.log.push({ from, topic: message.topic, payload: message.payload });
    if (message.retain) this.retained.set(message.topic, { ...message });
    const copy = { ...message, retain: false };
    const groups = new Map<string, MemoryClient[]>();
    for (const c of this.clients) {
      c.deliver(copy);
      for (const key of c.sharedMatching(message.topic)) groups.set(key, [...(groups.get(key) ?? []), c]);
    }
    for (const [key, members] of groups) {
      const i = (this.nextMember.get(key) ?? 0) % members.length;
      this.nextMember.set(key, i + 1);
      members[i]!.deliver(copy, true);
    }
  }

  /** @internal */
  retainedFor(filter: string): MqttMessage[] {
    return [...this.retained.values()].filter((m) => topicMatches(filter, m.topic));
  }

  /** @internal */
  detach(c: MemoryClient, abrupt: boolean): void {
    this.clients.delete(c);
    if (abrupt && c.will && this.up) {
      const w = c.will;
      this.route(c.clientId, { topic: w.topic, payload: typeof w.payload === 'string' ? new TextEncoder().encode(w.payload) : w.payload, retain: w.retain });
    }
  }
}

class MemoryClient implements MqttClient {
  readonly clientId: string;
  readonly will: MqttConnectOptions['will'];
  private current: MqttLinkStatus = 'connecting';
  private readonly filters = new Set<string>();
  /** Shared subscriptions: `<group> <filter>` → filter. */
  private readonly shared = new Map<string, string>();
  private readonly messageHandlers = new Set<(m: MqttMessage) => void>();
  private readonly statusHandlers = new Set<(s: MqttLinkStatus, e?: Error) => void>();
  private readonly queued: { topic: string; payload: Uint8Array; retain: boolean; done: () => void }[] = [];

  private readonly maxPacketBytes: number;

  constructor(private readonly broker: MemoryBroker, options: MqttConnectOptions) {
    this.clientId = options.clientId;
    this.will = options.will;
    this.maxPacketBytes = options.maxPacketBytes ?? MQTT_DEFAULT_MAX_PACKET_BYTES;
  }

  get status(): MqttLinkStatus {
    return this.current;
  }

  linkChanged(up: boolean): void {
    if (this.current === 'closed') return;
    const next: MqttLinkStatus = up ? 'connected' : 'offline';
    if (next === this.current) return;
    this.current = next;
    for (const h of this.statusHandlers) h(next, up ? undefined : new Error('broker unreachable'));
    if (up) for (const q of this.queued.splice(0)) this.send(q.topic, q.payload, q.retain, q.done);
  }

  private send(topic: string, payload: Uint8Array, retain: boolean, done: (rc?: number) => void): void {
    const bytes = mqttPublishPacketBytes(topic, payload.byteLength);
    if (this.broker.maxPacketBytes !== undefined && bytes > this.broker.maxPacketBytes) {
      this.broker.oversized.push({ at: 'broker', topic, bytes });
      return done(0x95); // packet too large
    }
    if (!this.broker.authorize(this.clientId, 'publish', topic)) return done(135);
    queueMicrotask(() => {
      this.broker.route(this.clientId, { topic, payload, retain });
      done();
    });
  }

  /** Keys of this client's shared subscriptions that match `topic` (only while connected). */
  sharedMatching(topic: string): string[] {
    if (this.current !== 'connected') return [];
    return [...this.shared].filter(([, f]) => topicMatches(f, topic)).map(([key]) => key);
  }

  deliver(message: MqttMessage, asShareMember = false): void {
    if (this.current !== 'connected') return;
    if (!asShareMember && ![...this.filters].some((f) => topicMatches(f, message.topic))) return;
    const bytes = mqttPublishPacketBytes(message.topic, message.payload.byteLength);
    if (bytes > this.maxPacketBytes) {
      this.broker.oversized.push({ at: this.clientId, topic: message.topic, bytes });
      return;
    }
    queueMicrotask(() => {
      for (const h of this.messageHandlers) h(message);
    });
  }

  publish(topic: string, payload: Uint8Array | string, options: { qos: MqttQos; retain?: boolean }): Promise<MqttPublishResult> {
    if (this.current === 'closed') return Promise.reject(new Error('MQTT client closed'));
    const bytes = typeof payload === 'string' ? new TextEncoder().encode(payload) : Uint8Array.from(payload);
    return new Promise((resolve) => {
      const done = (rc?: number) => resolve(rc === undefined ? {} : { reasonCode: rc });
      // QoS 0 while offline is lost, as on a real client; QoS 1 waits for the link.
      if (this.current !== 'connected') {
        if (options.qos === 0) return done();
        this.queued.push({ topic, payload: bytes, retain: options.retain ?? false, done });
        return;
      }
      this.send(topic, bytes, options.retain ?? false, done);
    });
  }

  async subscribe(filters: string[], _qos: MqttQos): Promise<number[]> {
    const granted = filters.map((f) => {
      const share = parseSharedFilter(f);
      if (!this.broker.authorize(this.clientId, 'subscribe', share?.filter ?? f)) return 128;
      if (share) this.shared.set(`${share.group} ${share.filter}`, share.filter);
      else this.filters.add(f);
      return 1;
    });
    for (const f of filters) if (this.filters.has(f)) for (const m of this.broker.retainedFor(f)) this.deliver({ ...m, retain: true });
    return granted;
  }

  async unsubscribe(filters: string[]): Promise<void> {
    for (const f of filters) {
      const share = parseSharedFilter(f);
      if (share) this.shared.delete(`${share.group} ${share.filter}`);
      else this.filters.delete(f);
    }
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
    this.current = 'closed';
    this.broker.detach(this, false);
  }

  async destroy(): Promise<void> {
    this.current = 'closed';
    this.broker.detach(this, true);
  }
}

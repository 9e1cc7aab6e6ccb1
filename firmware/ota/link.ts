import type { Clock } from '../../hal/clock/types.ts';
import type { MqttClient, MqttConnector, MqttLinkStatus, MqttTlsIdentity } from '../../hal/mqtt/types.ts';
import type { Logger } from '../../core/logger.ts';
import { OTA_MAX_ROOT_ANSWER_BYTES, OTA_MAX_ROOT_LIST_BYTES, VEHICLE_ID_PATTERN, vehicleTopics } from './constants.ts';
import { EvccError } from '../../core/errors.ts';
import { MqttRpc } from './rpc.ts';

/**
 * The vehicle's link to the OEM backend: one MQTT session (mutual TLS with the per-vehicle certificate, QoS 1,
 * clean reconnects), a retained `state` topic with last will = offline, and the request/response layer on the
 * vehicle's reply topics. Opening never blocks on the broker: requests wait (inside their own budgets) until the
 * link is up.
 */
export interface OtaLinkOptions {
  connector: MqttConnector;
  url: string;
  vehicleId: string;
  protocolVersion: 4 | 5;
  tls?: MqttTlsIdentity;
  clock: Clock;
  log: Logger;
  reconnectPeriodMs?: number;
  keepaliveSeconds?: number;
  /** Re-publish interval of unanswered requests (default OTA_REQUEST_REPUBLISH_MS, backing off; 0 = never). */
  republishMs?: number;
  /** Firmware version etc. published in the retained state. */
  stateExtras?: Record<string, unknown>;
}

export class OtaLink {
  readonly client: MqttClient;
  /** Root-CA answers. */
  readonly rootCaRpc: MqttRpc;
  /** Root-list answers (proactive sync). */
  readonly rootListRpc: MqttRpc;
  private readonly detach: () => void;
  private connectedOnce = false;
  private outageLogged = false;
  private readonly waiters = new Set<() => void>();

  constructor(private readonly o: OtaLinkOptions) {
    if (!VEHICLE_ID_PATTERN.test(o.vehicleId)) throw new EvccError('CONFIG_INVALID', `vehicle id ${JSON.stringify(o.vehicleId)} not allowed in topics`);
    const topics = vehicleTopics(o.vehicleId);
    this.client = o.connector.connect({
      url: o.url,
      clientId: `evcc-${o.vehicleId}`,
      protocolVersion: o.protocolVersion,
      ...(o.tls ? { tls: o.tls } : {}),
      will: { topic: topics.state, payload: JSON.stringify({ state: 'offline' }), qos: 1, retain: true },
      keepaliveSeconds: o.keepaliveSeconds ?? 30,
      reconnectPeriodMs: o.reconnectPeriodMs ?? 2_000,
      cleanSession: true,
      // Nothing the backend legitimately sends is bigger than the root list; MQTT 5 brokers must respect this.
      maxPacketBytes: OTA_MAX_ROOT_LIST_BYTES + 1024,
    });
    this.detach = this.client.onStatus((status, error) => this.onStatus(status, error));
    const common = { client: this.client, clock: o.clock, log: o.log, ...(o.republishMs !== undefined ? { republishMs: o.republishMs } : {}) };
    this.rootCaRpc = new MqttRpc({ ...common, replyTopic: topics.rootCaResponse, maxAnswerBytes: OTA_MAX_ROOT_ANSWER_BYTES });
    this.rootListRpc = new MqttRpc({ ...common, replyTopic: topics.rootListResponse, maxAnswerBytes: OTA_MAX_ROOT_LIST_BYTES });
  }

  get status(): MqttLinkStatus {
    return this.client.status;
  }

  private onStatus(status: MqttLinkStatus, error?: Error): void {
    if (status === 'connected') {
      this.o.log.info({ url: this.o.url, reconnect: this.connectedOnce }, this.connectedOnce ? 'reconnected to OEM backend broker' : 'connected to OEM backend broker');
      this.connectedOnce = true;
      const state = { state: 'online', ...(this.o.stateExtras ?? {}) };
      this.client.publish(vehicleTopics(this.o.vehicleId).state, JSON.stringify(state), { qos: 1, retain: true }).catch(() => undefined);
      for (const w of this.waiters) w();
      this.waiters.clear();
      this.outageLogged = false;
    } else if (status === 'offline' && error) {
      // One warning per outage; the reconnect attempts that follow are debug lines.
      this.o.log[this.outageLogged ? 'debug' : 'warn']({ url: this.o.url, error: error.message }, 'OEM backend broker unreachable');
      this.outageLogged = true;
    }
  }

  /** Resolves when the session is up (or false after `timeoutMs`). */
  async waitConnected(timeoutMs: number): Promise<boolean> {
    if (this.client.status === 'connected') return true;
    return new Promise((resolve) => {
      const done = () => {
        this.o.clock.clearTimer(timer);
        resolve(true);
      };
      const timer = this.o.clock.setTimer(() => {
        this.waiters.delete(done);
        resolve(false);
      }, timeoutMs);
      this.waiters.add(done);
    });
  }

  /** Orderly shutdown: publishes state offline (retained), then DISCONNECT (so the will is not needed). */
  async close(): Promise<void> {
    this.detach();
    this.rootCaRpc.close();
    this.rootListRpc.close();
    if (this.client.status === 'connected') {
      await this.client.publish(vehicleTopics(this.o.vehicleId).state, JSON.stringify({ state: 'offline' }), { qos: 1, retain: true }).catch(() => undefined);
    }
    await this.client.close();
  }
}

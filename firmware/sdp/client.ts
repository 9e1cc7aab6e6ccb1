/**
 * `discoverSecc`: runs the SDP engine on a real or simulated UDP6 transport. The request goes from the EV's
 * link-local address (when given) to ff02::1 port 15118 on the modem interface, with hop limit 1.
 */
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { Clock } from '../../hal/clock/types.ts';
import type { Udp6Transport } from '../../hal/net/types.ts';
import { SDP_MULTICAST_ADDRESS, SDP_SERVER_PORT } from './constants.ts';
import { SdpEngine, type SdpStep } from './engine.ts';
import type { SeccDiscoveryRes } from './codec.ts';
import type { SdpSettings } from './settings.ts';

export interface SeccEndpoint extends SeccDiscoveryRes {
  /** Interface the SECC was found on (scope of its link-local address). */
  iface: string;
  /** Requests sent until the answer. */
  requests: number;
  /** Datagrams ignored as junk. */
  ignored: number;
  elapsedMs: number;
}

export interface DiscoverDeps {
  udp: Udp6Transport;
  clock: Clock;
  log: Logger;
}

export interface DiscoverOptions {
  iface: string;
  /** The EV's link-local address on `iface` (source of the request); default: the kernel's choice. */
  localAddress?: string;
  settings: SdpSettings;
  signal?: AbortSignal;
}

export async function discoverSecc(deps: DiscoverDeps, o: DiscoverOptions): Promise<SeccEndpoint> {
  const { clock, log } = deps;
  const engine = new SdpEngine(o.settings);
  const sock = await deps.udp.open({ iface: o.iface, ...(o.localAddress ? { address: o.localAddress } : {}), port: 0, multicastHops: 1 });
  const t0 = clock.now();
  let requests = 0;
  try {
    return await new Promise<SeccEndpoint>((resolve, reject) => {
      let timer: ReturnType<Clock['setTimer']> | undefined;
      let done = false;
      const finish = (err?: EvccError, res?: SeccEndpoint): void => {
        if (done) return;
        done = true;
        if (timer !== undefined) clock.clearTimer(timer);
        o.signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(res!);
      };
      const onAbort = (): void => finish(new EvccError('ABORTED', 'SDP aborted', {}, { cause: o.signal?.reason }));
      const apply = (step: SdpStep): void => {
        if (done) return;
        if (step.ignored) log.debug({ ...step.ignored, cp: 'SDP-JUNK' }, 'ignored SDP datagram');
        if (step.error) {
          log.warn({ err: step.error, requests, cp: step.error.code }, `SDP failed: ${step.error.message}`);
          return finish(step.error);
        }
        if (step.result) {
          const r = step.result;
          const elapsedMs = clock.now() - t0;
          if (step.downgrade) log.warn({ secc: r.address, port: r.port, cp: 'SDP-NO-TLS' }, 'SECC offers no TLS: continuing WITHOUT TLS (policy tls-preferred, EIM only)');
          log.info({ secc: r.address, port: r.port, security: r.security, requests, elapsedMs }, `SECC found at [${r.address}]:${r.port} (${r.security === 'tls' ? 'TLS' : 'no TLS'})`);
          return finish(undefined, { ...r, iface: o.iface, requests, ignored: engine.ignoredCount.value, elapsedMs });
        }
        if (step.send) {
          requests++;
          log.debug({ attempt: requests, to: SDP_MULTICAST_ADDRESS }, 'SECCDiscoveryReq sent');
          sock.send(step.send, { address: SDP_MULTICAST_ADDRESS, port: SDP_SERVER_PORT, iface: o.iface }).catch((err: unknown) => {
            // A send failure (link down) counts as an unanswered try: SDP keeps its rhythm.
            log.warn({ err, attempt: requests }, 'SECCDiscoveryReq send failed');
          });
        }
        if (step.deadline !== undefined) {
          if (timer !== undefined) clock.clearTimer(timer);
          timer = clock.setTimer(() => apply(engine.onTimer(clock.now())), Math.max(0, step.deadline - clock.now()));
        }
      };
      if (o.signal?.aborted) return onAbort();
      o.signal?.addEventListener('abort', onAbort, { once: true });
      sock.onMessage((data, from) => {
        // Only answers that arrive on the modem interface count.
        if (from.iface && from.iface !== o.iface) return;
        apply(engine.onDatagram(data, from.address));
      });
      log.info({ iface: o.iface, security: o.settings.security }, 'SDP started');
      apply(engine.start(clock.now()));
    });
  } finally {
    await sock.close();
  }
}

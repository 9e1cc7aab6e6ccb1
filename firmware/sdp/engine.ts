/**
 * The SDP client as a pure state machine: inputs are `start`, received datagrams and timer expiries (with `now`),
 * outputs are the datagram to send, the next deadline and the outcome. No socket, no clock.
 *
 * States: Idle → WaitForSECCDiscoveryRes (attempt n, deadline now + responseTimeoutMs) → Discovered | Failed.
 * Junk (malformed, wrong length, wrong payload type, bad field values, wrong address class) is ignored and counted;
 * a well-formed no-TLS answer under `tls-required` fails at once with SDP_TLS_REQUIRED (the SECC told us it has
 * no TLS; asking again does not change that, and accepting it would be a silent downgrade).
 */
import { EvccError } from '../../core/errors.ts';
import { DYNAMIC_PORT_MIN } from './constants.ts';
import { decodeDiscoveryRes, encodeDiscoveryReq, type SdpErrorCode, type SeccDiscoveryRes } from './codec.ts';
import type { SdpSettings } from './settings.ts';

export type SdpState =
  | { name: 'Idle' }
  | { name: 'WaitForSECCDiscoveryRes'; attempt: number; deadline: number }
  | { name: 'Discovered'; secc: SeccDiscoveryRes }
  | { name: 'Failed'; error: EvccError };

export interface SdpIgnored {
  reason: string;
  bytes: number;
  from?: string;
}

export interface SdpStep {
  /** Datagram to multicast now (SECCDiscoveryReq). */
  send?: Uint8Array;
  /** When `onTimer` must be called next (absent when finished). */
  deadline?: number;
  ignored?: SdpIgnored;
  /** A downgrade accepted under `tls-preferred` (to be logged as WARN). */
  downgrade?: boolean;
  /** Set once the engine is finished. */
  result?: SeccDiscoveryRes;
  error?: EvccError;
}

export class SdpEngine {
  private st: SdpState = { name: 'Idle' };
  private readonly request: Uint8Array;
  readonly ignoredCount = { value: 0 };

  constructor(private readonly s: SdpSettings) {
    this.request = encodeDiscoveryReq({ security: s.security === 'no-tls' ? 'none' : 'tls', transport: 'tcp' });
  }

  get state(): SdpState {
    return this.st;
  }

  start(now: number): SdpStep {
    if (this.st.name !== 'Idle') throw new EvccError('CONFIG_INVALID', 'SDP engine already started');
    return this.sendAttempt(1, now);
  }

  onTimer(now: number): SdpStep {
    if (this.st.name !== 'WaitForSECCDiscoveryRes') return {};
    if (now < this.st.deadline) return { deadline: this.st.deadline };
    if (this.st.attempt >= this.s.maxRequests) {
      const error = new EvccError<SdpErrorCode>('SDP_NO_RESPONSE', `no valid SECCDiscoveryRes after ${this.st.attempt} requests`, {
        requests: this.st.attempt, ignored: this.ignoredCount.value,
      });
      this.st = { name: 'Failed', error };
      return { error };
    }
    return this.sendAttempt(this.st.attempt + 1, now);
  }

  onDatagram(bytes: Uint8Array, from: string): SdpStep {
    if (this.st.name !== 'WaitForSECCDiscoveryRes') return {};
    const deadline = this.st.deadline;
    let res: SeccDiscoveryRes;
    try {
      res = decodeDiscoveryRes(bytes);
      this.checkFields(res);
    } catch (err) {
      this.ignoredCount.value++;
      return { deadline, ignored: { reason: (err as EvccError).code === 'SDP_BAD_FIELD' ? (err as Error).message : String((err as EvccError).details?.reason ?? (err as Error).message), bytes: bytes.length, from } };
    }
    if (res.security === 'none' && this.s.security === 'tls-required') {
      const error = new EvccError<SdpErrorCode>('SDP_TLS_REQUIRED', 'SECC offers no TLS but TLS is required (contract use / PnC): refused', {
        secc: res.address, port: res.port, attempt: this.st.attempt,
      });
      this.st = { name: 'Failed', error };
      return { error };
    }
    this.st = { name: 'Discovered', secc: res };
    return { result: res, downgrade: res.security === 'none' && this.s.security === 'tls-preferred' };
  }

  private sendAttempt(attempt: number, now: number): SdpStep {
    const deadline = now + this.s.responseTimeoutMs;
    this.st = { name: 'WaitForSECCDiscoveryRes', attempt, deadline };
    return { send: this.request, deadline };
  }

  private checkFields(r: SeccDiscoveryRes): void {
    const bad = (msg: string, field: string): never => { throw new EvccError<SdpErrorCode>('SDP_BAD_FIELD', msg, { field }); };
    const a = r.address;
    if (a === '::' || a === '::1' || a.startsWith('ff')) bad(`SECC address ${a} is not a unicast address`, 'SECCIPAddress');
    if (this.s.requireLinkLocal && !/^fe[89ab][0-9a-f]:/.test(a)) bad(`SECC address ${a} is not link-local`, 'SECCIPAddress');
    if (r.port === 0 || (this.s.requireDynamicPort && r.port < DYNAMIC_PORT_MIN)) bad(`SECC port ${r.port} outside the dynamic range`, 'SECCPort');
  }
}

/**
 * The dashboard's live state: one DashboardFeed (firmware/dashboard/feed.ts) fed from the runtime — the logger's
 * output records (Runtime.onLogLine), the session driver's decoded messages, session start/end and the certificate
 * and system views — and fanned out to every connected screen. Wall-clock time is stamped here, at the I/O edge.
 */
import { DashboardFeed, type DashboardInput, type DashboardSnapshot, type DashboardUpdate, type MessageInput, type SessionEndInput } from '../../firmware/dashboard/feed.ts';
import type { CertificateView } from '../../firmware/dashboard/certificates.ts';
import type { SystemView } from '../../firmware/dashboard/system.ts';

export type UpdateListener = (updates: DashboardUpdate[]) => void;

/**
 * The part of the session capture's event stream the dashboard reads (firmware/capture/records.ts SessionEvent):
 * its `message` events, each a decoded message log record.
 */
export interface CaptureStreamEvent {
  type: string;
  record?: { direction: 'tx' | 'rx'; message: string; decoded: unknown; rttMs?: number };
}

export class DashboardHub {
  private readonly feed = new DashboardFeed();
  private readonly listeners = new Set<UpdateListener>();

  constructor(private readonly now: () => number = Date.now) {}

  snapshot(): DashboardSnapshot {
    return this.feed.snapshot();
  }

  /** Subscribes a screen; returns the unsubscribe function. */
  subscribe(listener: UpdateListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  push(input: DashboardInput): void {
    const updates = this.feed.apply(input);
    if (updates.length === 0) return;
    for (const l of this.listeners) {
      try {
        l(updates);
      } catch {
        this.listeners.delete(l); // a broken screen is dropped, never the runtime
      }
    }
  }

  /** A logger output line (JSON, as Runtime.onLogLine hands it). Lines that are not JSON records are ignored. */
  logLine(jsonLine: string): void {
    let record: unknown;
    try {
      record = JSON.parse(jsonLine);
    } catch {
      return;
    }
    if (record && typeof record === 'object' && !Array.isArray(record)) this.push({ kind: 'log', at: this.now(), record: record as Record<string, unknown> });
  }

  message(message: MessageInput, socPercent?: number): void {
    this.push({ kind: 'message', at: this.now(), message, ...(socPercent !== undefined ? { socPercent } : {}) });
  }

  /**
   * An event of the session capture's stream (firmware/capture/records.ts): its decoded messages feed the timeline
   * and the chart. Session start and end come from the composition root (it has the report).
   */
  captureEvent(e: CaptureStreamEvent, socPercent?: number): void {
    if (e.type !== 'message' || !e.record) return;
    const r = e.record;
    this.message({ direction: r.direction, name: r.message, document: r.decoded, ...(r.rttMs !== undefined ? { rttMs: r.rttMs } : {}) }, socPercent);
  }

  sessionStarted(label: string): void {
    this.push({ kind: 'sessionStarted', at: this.now(), label });
  }

  sessionEnded(end: SessionEndInput): void {
    this.push({ kind: 'sessionEnded', at: this.now(), end });
  }

  certificates(view: CertificateView): void {
    this.push({ kind: 'certificates', view });
  }

  system(view: SystemView): void {
    this.push({ kind: 'system', view });
  }
}

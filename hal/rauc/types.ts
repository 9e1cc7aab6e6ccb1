/**
 * The slot installer as the OTA runtime sees it: RAUC's service (`rauc service`, D-Bus name `de.pengutronix.rauc`,
 * object `/`, interface `de.pengutronix.rauc.Installer`, RAUC 1.8). One operation at a time: RAUC refuses a second
 * InstallBundle while `Operation` is `installing`.
 * Implementations: `RaucDbusInstaller` (hal/rauc/dbus.ts, the real service on the system bus).
 */

/** RAUC's `Progress` property (percentage, message, nesting depth), emitted while an install runs. */
export interface InstallProgress {
  /** 0…100. */
  percentage: number;
  /** RAUC's step text, e.g. "Checking bundle", "Copying image to rootfs.1". */
  message: string;
  /** Nesting depth of the step (1 = top level). */
  depth: number;
}

export interface InstallOptions {
  /** Called for each `Progress` change of this install (in order; never after install() settles). */
  onProgress?: (progress: InstallProgress) => void;
  /**
   * Stop waiting for `Completed` (the call rejects with ABORTED). RAUC has no cancel: an install already running
   * continues in the service; a caller that aborts must not start another before `operation()` is idle again.
   */
  signal?: AbortSignal;
}

/** A finished, successful install (`Completed(0)`). A failed one rejects with RAUC_INSTALL_FAILED and `LastError`. */
export interface InstallOutcome {
  /** The slot RAUC wrote (name, e.g. `rootfs.1`), read back from the slot status after `Completed`. */
  slot: string;
  /** Its bootname (`A`/`B`): RAUC made it the primary boot target. */
  bootname: string;
}

/**
 * `Mark(state, slot_identifier)`: `good` (boot it again), `bad` (never boot it again until reinstalled), `active`
 * (boot it next: primary). Identifier `booted`, `other` (the other slot of the booted one's class), or a slot name.
 */
export type MarkState = 'good' | 'bad' | 'active';
export type SlotIdentifier = 'booted' | 'other' | (string & {});

/** One slot from `GetSlotStatus` (RAUC's status keys, typed; unknown keys dropped). */
export interface SlotStatus {
  /** Slot name, `<class>.<index>` (e.g. `rootfs.0`). */
  name: string;
  class: string;
  device: string;
  type: string;
  bootname?: string;
  /** `booted` (running now), `active` (the other slot of a booted parent), `inactive`. */
  state: string;
  /** The bootloader's view: `good` or `bad` (absent for slots without a bootname). */
  bootStatus?: 'good' | 'bad';
  /** From RAUC's slot status file, after an install into this slot. */
  bundleVersion?: string;
  bundleCompatible?: string;
  /** SHA-256 of the image RAUC wrote (hex). */
  sha256?: string;
  installedTimestamp?: string;
  installedCount?: number;
}

export interface SlotInstaller {
  /**
   * `InstallBundle(source, {})` then waits for `Completed`: resolves on 0, rejects with RAUC_INSTALL_FAILED carrying
   * `LastError` otherwise; RAUC_BUSY when the service already installs.
   */
  install(bundlePath: string, opts?: InstallOptions): Promise<InstallOutcome>;
  /** `Mark`: returns the slot name RAUC marked. RAUC_MARK_FAILED when RAUC refuses. */
  mark(state: MarkState, slot: SlotIdentifier): Promise<string>;
  /** `BootSlot`: the bootname of the booted slot (`A`/`B`), as RAUC detected it at start. */
  bootSlot(): Promise<string>;
  /** `GetPrimary`: the slot name the bootloader boots next. */
  primary(): Promise<string>;
  /** `GetSlotStatus`. */
  slots(): Promise<SlotStatus[]>;
  /** `Operation`: `idle` or `installing`. */
  operation(): Promise<string>;
  /** `LastError`: the last failed operation's message ('' if none). */
  lastError(): Promise<string>;
  /** `Compatible`: the system's compatible string from RAUC's system.conf (what a bundle must name). */
  compatible(): Promise<string>;
  /** Releases the bus connection. */
  close(): Promise<void>;
}

/**
 * Asks the platform to reboot into what the bootloader boots next (on the device: `systemctl reboot`; on the bench:
 * the rig's simulated power cycle). Resolves once the request is handed over; the process may die any time after.
 */
export interface RebootHook {
  reboot(reason: string): Promise<void>;
}

/** What `rauc info` reports of a verified bundle (hal/rauc/bundle.ts verifyBundle). */
export interface BundleImage {
  filename: string;
  /** SHA-256 of the image (hex), from the signed manifest. */
  sha256: string;
  size: number;
}

export interface BundleInfo {
  compatible: string;
  version: string;
  /** Images by slot class (`rootfs`, …), from the signed manifest. */
  images: Record<string, BundleImage>;
}

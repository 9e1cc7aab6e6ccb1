import { sessionBus, Variant, type MessageBus, type ProxyInterface } from '@jellybrick/dbus-next';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { InstallOptions, InstallOutcome, InstallProgress, MarkState, SlotIdentifier, SlotInstaller, SlotStatus } from './types.ts';

/**
 * RAUC's service through its D-Bus API (RAUC 1.8, `de.pengutronix.rauc.Installer` on `/` of the system bus; the
 * interface XML ships in Debian's rauc-service: /usr/share/dbus-1/interfaces/de.pengutronix.rauc.Installer.xml).
 *
 * Client library: @jellybrick/dbus-next — pure JavaScript (no native addon to cross-build for the Pi), typed (ships
 * its .d.ts), promise-based proxies from introspection, and maintained: a fork of dbus-next (dbusjs, last release
 * 2021, open issues unanswered) with current releases and its XML dependencies replaced by fast-xml-parser.
 * @homebridge/dbus-native is maintained too but callback-based and untyped; `dbus` needs a native addon.
 *
 * One install at a time (RAUC's rule). `Completed(i)` carries no operation id, so install() subscribes before it
 * calls InstallBundle and takes the first Completed after its call returned. If the service disappears from the bus
 * while we wait (killed, power loss of the service alone), install() rejects with RAUC_UNAVAILABLE instead of hanging.
 */
export const RAUC_BUS_NAME = 'de.pengutronix.rauc';
export const RAUC_OBJECT_PATH = '/';
export const RAUC_INSTALLER_INTERFACE = 'de.pengutronix.rauc.Installer';

export interface RaucDbusOptions {
  /** `unix:path=…`; default: DBUS_SYSTEM_BUS_ADDRESS, else the system bus socket. */
  busAddress?: string;
  /** Connecting and introspecting RAUC's object (default 10 s). */
  timeoutMs?: number;
  log?: Logger;
}

type Props = Record<string, Variant>;
type Listener = (...args: unknown[]) => void;

/** The introspected proxies, typed by the interface XML (dbus-next builds their members at run time). */
interface SignalSource {
  on(event: string, listener: Listener): unknown;
  off(event: string, listener: Listener): unknown;
}
interface InstallerProxy extends SignalSource {
  InstallBundle(source: string, args: Record<string, Variant>): Promise<void>;
  Mark(state: string, slotIdentifier: string): Promise<[string, string]>;
  GetSlotStatus(): Promise<[string, Record<string, unknown>][]>;
  GetPrimary(): Promise<string>;
}
interface PropertiesProxy extends SignalSource {
  Get(iface: string, name: string): Promise<Variant>;
}

function unwrap(v: unknown): unknown {
  return v instanceof Variant ? unwrap(v.value) : v;
}

function dbusReason(err: unknown): string {
  const e = err as { type?: unknown; text?: unknown; message?: unknown };
  return String(e?.text ?? e?.message ?? err);
}

/** GetSlotStatus entry → SlotStatus (RAUC 1.8 keys: class, device, type, bootname, state, boot-status, bundle.*, sha256, installed.*). */
export function toSlotStatus(name: string, raw: Record<string, unknown>): SlotStatus {
  const get = (k: string): unknown => unwrap(raw[k]);
  const str = (k: string): string | undefined => (typeof get(k) === 'string' ? (get(k) as string) : undefined);
  const bootStatus = str('boot-status');
  const count = get('installed.count');
  return {
    name,
    class: str('class') ?? name.split('.')[0]!,
    device: str('device') ?? '',
    type: str('type') ?? '',
    ...(str('bootname') ? { bootname: str('bootname') } : {}),
    state: str('state') ?? 'inactive',
    ...(bootStatus === 'good' || bootStatus === 'bad' ? { bootStatus } : {}),
    ...(str('bundle.version') ? { bundleVersion: str('bundle.version') } : {}),
    ...(str('bundle.compatible') ? { bundleCompatible: str('bundle.compatible') } : {}),
    ...(str('sha256') ? { sha256: str('sha256') } : {}),
    ...(str('installed.timestamp') ? { installedTimestamp: str('installed.timestamp') } : {}),
    ...(typeof count === 'number' || typeof count === 'bigint' ? { installedCount: Number(count) } : {}),
  };
}

export class RaucDbusInstaller implements SlotInstaller {
  private constructor(
    private readonly bus: MessageBus,
    private readonly installer: InstallerProxy,
    private readonly props: PropertiesProxy,
    private readonly busDaemon: SignalSource,
    private readonly log: Logger | undefined,
  ) {}

  /** Connects and introspects RAUC's object; RAUC_UNAVAILABLE when the bus or the service is not there. */
  static async connect(o: RaucDbusOptions = {}): Promise<RaucDbusInstaller> {
    const busAddress = o.busAddress ?? process.env.DBUS_SYSTEM_BUS_ADDRESS ?? 'unix:path=/var/run/dbus/system_bus_socket';
    let bus: MessageBus | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      // The client takes an explicit address only through its session-bus constructor (systemBus() reads the
      // environment); the bus type matters to the daemon's policy, not to the client.
      const b = sessionBus({ busAddress });
      bus = b;
      // A connection failure surfaces only as an 'error' event (pending calls never settle): raced below.
      const failed = new Promise<never>((_, fail) => {
        (b as unknown as SignalSource).on('error', (err: unknown) => {
          o.log?.warn({ err: dbusReason(err) }, 'D-Bus connection error');
          fail(err);
        });
        timer = setTimeout(() => fail(new Error(`no answer within ${o.timeoutMs ?? 10_000} ms`)), o.timeoutMs ?? 10_000);
      });
      failed.catch(() => undefined);
      const proxy = <T>(i: ProxyInterface): T => i as unknown as T;
      const daemon = await Promise.race([b.getProxyObject('org.freedesktop.DBus', '/org/freedesktop/DBus'), failed]);
      const busDaemon = proxy<SignalSource & { NameHasOwner(name: string): Promise<boolean> }>(daemon.getInterface('org.freedesktop.DBus'));
      // Asked first: introspecting a name nobody owns leaves a rejected promise inside the client library.
      if (!(await Promise.race([busDaemon.NameHasOwner(RAUC_BUS_NAME), failed]))) throw new Error(`${RAUC_BUS_NAME} is not on the bus (rauc service not running)`);
      const obj = await Promise.race([b.getProxyObject(RAUC_BUS_NAME, RAUC_OBJECT_PATH), failed]);
      clearTimeout(timer);
      return new RaucDbusInstaller(b, proxy<InstallerProxy>(obj.getInterface(RAUC_INSTALLER_INTERFACE)),
        proxy<PropertiesProxy>(obj.getInterface('org.freedesktop.DBus.Properties')), busDaemon, o.log);
    } catch (err) {
      clearTimeout(timer);
      bus?.disconnect();
      throw new EvccError('RAUC_UNAVAILABLE', `RAUC service ${RAUC_BUS_NAME} not reachable on ${busAddress}: ${dbusReason(err)}`, { busAddress }, { cause: err });
    }
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new EvccError('RAUC_UNAVAILABLE', `RAUC ${what} failed on the bus: ${dbusReason(err)}`, { call: what }, { cause: err });
    }
  }

  private async property(name: string): Promise<unknown> {
    return this.call(`Get ${name}`, async () => unwrap(await this.props.Get(RAUC_INSTALLER_INTERFACE, name)));
  }

  async install(bundlePath: string, opts: InstallOptions = {}): Promise<InstallOutcome> {
    if (opts.signal?.aborted) throw new EvccError('ABORTED', 'install aborted before it started');
    let settle: { ok: (code: number) => void; fail: (err: EvccError) => void } | undefined;
    const done = new Promise<number>((ok, fail) => {
      settle = { ok, fail };
    });
    const onCompleted: Listener = (result) => settle!.ok(Number(result));
    const onProps: Listener = (iface, changed) => {
      if (iface !== RAUC_INSTALLER_INTERFACE) return;
      const progress = (changed as Props).Progress;
      if (!progress) return;
      const [percentage, message, depth] = unwrap(progress) as [number, string, number];
      opts.onProgress?.({ percentage, message, depth } satisfies InstallProgress);
    };
    const onOwner: Listener = (name, _old, now) => {
      if (name === RAUC_BUS_NAME && now === '') settle!.fail(new EvccError('RAUC_UNAVAILABLE', 'RAUC service left the bus during the install', { bundle: bundlePath }));
    };
    const onAbort = (): void => settle!.fail(new EvccError('ABORTED', 'stopped waiting for the RAUC install (it continues in the service)', { bundle: bundlePath }));
    this.installer.on('Completed', onCompleted);
    this.props.on('PropertiesChanged', onProps);
    this.busDaemon.on('NameOwnerChanged', onOwner);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      // Idle first: a Completed of an install already running would otherwise be taken for ours. Subscribed before
      // the call: the reply and a fast install's Completed can arrive in one read, the signal handled before the
      // reply's promise continuation runs.
      const operation = await this.operation();
      if (operation !== 'idle') throw new EvccError('RAUC_BUSY', `RAUC is busy (${operation})`, { bundle: bundlePath, operation });
      try {
        await this.installer.InstallBundle(bundlePath, {});
      } catch (err) {
        const reason = dbusReason(err);
        if (/already|in progress|busy/i.test(reason)) throw new EvccError('RAUC_BUSY', `RAUC refused the install: ${reason}`, { bundle: bundlePath });
        throw new EvccError('RAUC_UNAVAILABLE', `RAUC InstallBundle failed on the bus: ${reason}`, { bundle: bundlePath }, { cause: err });
      }
      this.log?.info({ cp: 'RAUC-INSTALL-START', bundle: bundlePath }, `RAUC installs ${bundlePath}`);
      const result = await done;
      if (result !== 0) {
        const lastError = String(await this.property('LastError'));
        throw new EvccError('RAUC_INSTALL_FAILED', `RAUC install failed (${result}): ${lastError}`, { bundle: bundlePath, result, lastError });
      }
      const primary = await this.primary();
      const slot = (await this.slots()).find((s) => s.name === primary);
      this.log?.info({ cp: 'RAUC-INSTALL-DONE', slot: primary }, `RAUC installed ${bundlePath} into ${primary}`);
      return { slot: primary, bootname: slot?.bootname ?? '' };
    } finally {
      this.installer.off('Completed', onCompleted);
      this.props.off('PropertiesChanged', onProps);
      this.busDaemon.off('NameOwnerChanged', onOwner);
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  async mark(state: MarkState, slot: SlotIdentifier): Promise<string> {
    let out: unknown;
    try {
      out = await this.installer.Mark(state, slot);
    } catch (err) {
      throw new EvccError('RAUC_MARK_FAILED', `RAUC refused to mark ${slot} ${state}: ${dbusReason(err)}`, { state, slot }, { cause: err });
    }
    const [name, message] = out as [string, string];
    this.log?.info({ cp: 'RAUC-MARK', state, slot: name }, `RAUC: ${message}`);
    return name;
  }

  async bootSlot(): Promise<string> {
    return String(await this.property('BootSlot'));
  }

  async primary(): Promise<string> {
    return this.call('GetPrimary', async () => String(await this.installer.GetPrimary()));
  }

  async slots(): Promise<SlotStatus[]> {
    const raw = await this.call('GetSlotStatus', async () => (await this.installer.GetSlotStatus()) as [string, Record<string, unknown>][]);
    return raw.map(([name, dict]) => toSlotStatus(name, dict));
  }

  async operation(): Promise<string> {
    return String(await this.property('Operation'));
  }

  async lastError(): Promise<string> {
    return String(await this.property('LastError'));
  }

  async compatible(): Promise<string> {
    return String(await this.property('Compatible'));
  }

  async close(): Promise<void> {
    this.bus.disconnect();
  }
}

import { execa } from 'execa';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { describeWith, tool } from '../support/prereq.ts';
import { RAUC_RIG_PREREQS, RaucRig } from '../support/rauc-rig.ts';

/**
 * deploy/dbus/evcc-rauc.conf against the real dbus-daemon and `rauc service`: RAUC's own bus policy lets any local
 * user drive the installer; with ours included after it (as system.d orders the files), only root and the runtime's
 * user may. `nobody` stands for any other user; the runtime's user is shown by the same policy naming `nobody`
 * instead of `evcc` (this machine has no evcc user).
 */
const POLICY = join(process.cwd(), 'deploy/dbus/evcc-rauc.conf');
const NOBODY = 65534;

/** A call to RAUC on the rig's bus as `uid` (dbus-send): the Compatible property, or the (deprecated, still served) Install. */
async function callAs(rig: RaucRig, uid: number, call: 'compatible' | 'install' = 'compatible'): Promise<{ ok: boolean; out: string }> {
  const what = call === 'compatible'
    ? ['/', 'org.freedesktop.DBus.Properties.Get', 'string:de.pengutronix.rauc.Installer', 'string:Compatible']
    : ['/', 'de.pengutronix.rauc.Installer.Install', 'string:/nonexistent/bundle.raucb'];
  const r = await execa('dbus-send', [`--bus=${rig.busAddress}`, '--print-reply', '--dest=de.pengutronix.rauc', ...what],
    { reject: false, uid, gid: uid === 0 ? 0 : NOBODY });
  return { ok: r.exitCode === 0, out: `${r.stdout}${r.stderr}` };
}

/** The rig's bus socket reachable by other users (the rig keeps its dirs 0700). */
async function openSocketPath(rig: RaucRig): Promise<void> {
  for (let d = dirname(rig.busSocket); d !== dirname(d) && d.startsWith(tmpdir()) && d !== tmpdir(); d = dirname(d)) await chmod(d, 0o711);
  await chmod(rig.busSocket, 0o777);
}

describeWith([...RAUC_RIG_PREREQS, tool('dbus-send')])('deploy/dbus/evcc-rauc.conf: only root and the runtime drive RAUC', () => {
  const rigs: RaucRig[] = [];
  let scratch: string | undefined;
  afterAll(async () => {
    for (const r of rigs) await r.close();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  async function rigWith(policies: string[]): Promise<RaucRig> {
    const rig = await RaucRig.create({ busPolicies: policies });
    rigs.push(rig);
    await rig.startService();
    await openSocketPath(rig);
    return rig;
  }

  it('RAUC alone lets any user call it; with our policy another user is refused, root is not', async () => {
    const plain = await rigWith([]);
    // What the vehicle would have without the file: anyone reads and, worse, starts an install.
    expect(await callAs(plain, NOBODY)).toMatchObject({ ok: true, out: expect.stringMatching(/evcc-bench/) });
    expect((await callAs(plain, NOBODY, 'install')).out).not.toMatch(/AccessDenied/);

    const guarded = await rigWith([POLICY]);
    const refused = await callAs(guarded, NOBODY);
    expect(refused.ok).toBe(false);
    expect(refused.out).toMatch(/org\.freedesktop\.DBus\.Error\.AccessDenied/);
    expect((await callAs(guarded, NOBODY, 'install')).out).toMatch(/org\.freedesktop\.DBus\.Error\.AccessDenied/);
    expect(await callAs(guarded, 0)).toMatchObject({ ok: true, out: expect.stringMatching(/evcc-bench/) });
    expect((await callAs(guarded, 0, 'install')).out).not.toMatch(/AccessDenied/); // RAUC itself answers (no such bundle)
  }, 120_000);

  it('the user the policy names (evcc on the vehicle) is let back in', async () => {
    scratch = await mkdtemp(join(tmpdir(), 'evcc-bus-policy-'));
    const named = join(scratch, 'evcc-rauc.conf');
    const text = await readFile(POLICY, 'utf8');
    expect(text).toMatch(/<policy user="evcc">/);
    await writeFile(named, text.replace('<policy user="evcc">', '<policy user="nobody">'));
    const rig = await rigWith([named]);
    expect(await callAs(rig, NOBODY)).toMatchObject({ ok: true, out: expect.stringMatching(/evcc-bench/) });
    expect((await callAs(rig, NOBODY, 'install')).out).not.toMatch(/AccessDenied/);
  }, 120_000);
});

SUMMARY = "EVCC: EV-side ISO 15118 communication controller runtime (SLAC, SDP, TLS, EXI, TPM-bound keys, OTA root-CA fetch)"

# The release this recipe builds is prepared by `node scripts/release-shrinkwrap.mjs` in the evcc checkout
# (README "Prepare the release"). It writes ${EVCC_RELEASE_DIR} (not committed):
#   npm-shrinkwrap.json          production dependencies with resolved URL + integrity (npmsw:// below)
#   build-tools-shrinkwrap.json  the TypeScript compiler do_evcc_build runs (never installed on the device)
#   evcc-release.inc             EVCC_SRCREV (the commit the lock was read from), EVCC_NPM_LICENSE, EVCC_NPM_LIC_FILES_CHKSUM
# Without it the recipe skips itself at parse time (a build that does not ask for evcc still parses, offline).
EVCC_RELEASE_DIR ?= "${THISDIR}/release"
include ${EVCC_RELEASE_DIR}/evcc-release.inc
EVCC_SRCREV ?= ""
EVCC_NPM_LICENSE ?= ""
EVCC_NPM_LIC_FILES_CHKSUM ?= ""

# Our code is Apache-2.0 (LICENSE); everything under node_modules is installed into the same package, so the
# package licence includes every production dependency's licence, each with its file's checksum.
LICENSE = "${@' & '.join(filter(None, ['Apache-2.0', d.getVar('EVCC_NPM_LICENSE')]))}"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57 ${EVCC_NPM_LIC_FILES_CHKSUM}"

# Source: the evcc git repository this layer is part of (EVCC_REPO_DIR, layer.conf) at the pinned release commit; a
# release builder fetching from a server sets EVCC_GIT_URL/EVCC_GIT_PROTOCOL. A fixed SRCREV needs no network at
# parse time (AUTOREV would run git ls-remote while parsing every recipe).
EVCC_GIT_URL ?= "${EVCC_REPO_DIR}"
EVCC_GIT_PROTOCOL ?= "file"
SRCREV = "${EVCC_SRCREV}"
# npmsw:// fetches every tarball the shrinkwrap names (integrity-checked) and unpacks them into ${S}/node_modules;
# destsuffix=git is ${S}. The build tools go beside it and never reach the package.
SRC_URI = "git://${EVCC_GIT_URL};protocol=${EVCC_GIT_PROTOCOL};nobranch=1 \
           npmsw://${EVCC_RELEASE_DIR}/npm-shrinkwrap.json;destsuffix=git \
           npmsw://${EVCC_RELEASE_DIR}/build-tools-shrinkwrap.json;destsuffix=evcc-build-tools \
           file://evcc.wrapper \
           file://evcc-prune-to-packlist.mjs \
          "
PV = "0.1.0+git"
S = "${WORKDIR}/git"

python () {
    import os
    release = d.getVar('EVCC_RELEASE_DIR')
    wanted = ['npm-shrinkwrap.json', 'build-tools-shrinkwrap.json', 'evcc-release.inc']
    missing = [f for f in wanted if not os.path.exists(os.path.join(release, f))]
    if missing or not d.getVar('EVCC_SRCREV'):
        raise bb.parse.SkipRecipe("no evcc release prepared (missing in %s: %s): run 'node scripts/release-shrinkwrap.mjs' "
                                  "in the evcc checkout" % (release, ', '.join(missing) or 'EVCC_SRCREV'))
}

inherit npm systemd useradd

# The device runs the compiled tree (dist/), never TypeScript through a transpiler: dist/ must exist before
# npm.bbclass packs ${S} in do_configure. That pack is a plain tar, which ignores package.json "files": after the
# build ${S} keeps only what `npm pack` would ship (and node_modules), so sources, tests and their fixture keys
# never reach the device.
do_evcc_build() {
    ln -sfn ${WORKDIR}/evcc-build-tools/node_modules/typescript ${S}/node_modules/typescript
    cd ${S}
    node scripts/build.mjs
    rm -f ${S}/node_modules/typescript
    test -f ${S}/dist/bin/evcc.js || bbfatal "scripts/build.mjs produced no dist/bin/evcc.js"
    npm_config_cache=${WORKDIR}/evcc-pack-cache npm pack --dry-run --json --ignore-scripts --offline \
        > ${WORKDIR}/evcc-packlist.json
    node ${WORKDIR}/evcc-prune-to-packlist.mjs ${WORKDIR}/evcc-packlist.json
}
addtask evcc_build after do_patch do_prepare_recipe_sysroot before do_configure

DEPENDS += "python3-native"
RDEPENDS:${PN} += "nodejs tpm2-tools libtss2-tcti-device rauc openssl openssl-bin iproute2"

USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system evcc; --system tss"
USERADD_PARAM:${PN} = "--system --home-dir /var/lib/evcc --no-create-home --shell /sbin/nologin -g evcc -G tss,dialout evcc"

# Every unit in deploy/systemd (the layer check in test/integration/yocto-layer.test.ts keeps this list complete).
EVCC_UNITS = "evcc-boot.service evcc.service evcc-commit.service evcc-reboot.path evcc-reboot.service"
SYSTEMD_SERVICE:${PN} = "${EVCC_UNITS}"
SYSTEMD_AUTO_ENABLE = "enable"

do_install:append() {
    evcc_home=${D}${nonarch_libdir}/node_modules/evcc
    test -f $evcc_home/dist/bin/evcc.js || bbfatal "the installed package has no dist/ (do_evcc_build did not run)"
    # The AF_PACKET addon (hal/plc/native, built for the target by the package's postinstall with the cross
    # toolchain) only warns when it cannot be built, so a laptop without headers still installs. On the device a
    # missing addon means no SLAC: fail the build instead.
    test -f $evcc_home/hal/plc/native/build/Release/afpacket.node || \
        bbfatal "hal/plc/native: afpacket.node was not built for ${TARGET_ARCH} (see log.do_compile)"
    # Prebuilt binaries for other platforms (serialport's prebuilds/: linux-x64, linux-arm*, darwin, win32,
    # android) are not for this target (QA arch); node-gyp-build loads the source build in build/Release first.
    find $evcc_home/node_modules -type d -name prebuilds -prune -exec rm -rf {} +
    # Maintainer scripts inside dependencies (bash/python/perl, e.g. pino's inc-version.sh) never run on the device
    # and would pull those interpreters into the image (QA file-rdeps).
    find $evcc_home/node_modules -type f -size -256k -print0 | \
        xargs -0 -r awk 'FNR == 1 { if ($0 ~ /^#!.*(bash|python|perl)/) print FILENAME; nextfile }' | \
        while read -r script; do rm -f "$script"; done

    install -d ${D}${systemd_system_unitdir} ${D}${sysconfdir}/evcc ${D}${nonarch_libdir}/tmpfiles.d ${D}${bindir}
    for unit in ${EVCC_UNITS}; do
        install -m 0644 ${S}/deploy/systemd/$unit ${D}${systemd_system_unitdir}/
    done
    install -m 0644 ${S}/deploy/systemd/evcc.tmpfiles.conf ${D}${nonarch_libdir}/tmpfiles.d/evcc.conf
    # RAUC's own bus policy lets any local user drive the installer: only root and evcc may (deploy/dbus).
    install -d ${D}${datadir}/dbus-1/system.d
    install -m 0644 ${S}/deploy/dbus/evcc-rauc.conf ${D}${datadir}/dbus-1/system.d/evcc-rauc.conf
    # Readable by the runtime (group evcc), writable by root only.
    install -m 0640 -o root -g evcc ${S}/deploy/config/evcc.bench.json ${D}${sysconfdir}/evcc/evcc.json
    # npm's bin link would start dist/bin/evcc.js through its shebang; the wrapper names the interpreter itself.
    rm -f ${D}${bindir}/evcc
    install -m 0755 ${WORKDIR}/evcc.wrapper ${D}${bindir}/evcc
}
FILES:${PN} += "${systemd_system_unitdir} ${nonarch_libdir}/tmpfiles.d ${sysconfdir}/evcc ${datadir}/dbus-1/system.d"
CONFFILES:${PN} = "${sysconfdir}/evcc/evcc.json"

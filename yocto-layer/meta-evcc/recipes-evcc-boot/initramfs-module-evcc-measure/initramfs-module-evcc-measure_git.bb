SUMMARY = "EVCC measured boot: initramfs-framework module that measures the root file system into TPM PCR 14 before switch_root"
DESCRIPTION = "Installs /init.d/89-evccmeasure (runs after udev, before 90-rootfs mounts the root read-only) and \
/usr/sbin/evcc-measure-rootfs (POSIX sh + tpm2-tools): SHA-256 of the slot image, extended into PCR 14, event \
log in /run/evcc-boot/measurements.log. The same script the bench runs against swtpm (boot/README.md)."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"

# Same source and commit as the runtime (recipes-evcc/evcc/evcc_git.bb): the evcc tree at the release's EVCC_SRCREV,
# so the initramfs hook and the `evcc boot` check that replays its event log always come from one release.
EVCC_RELEASE_DIR ?= "${THISDIR}/../../recipes-evcc/evcc/release"
include ${EVCC_RELEASE_DIR}/evcc-release.inc
EVCC_SRCREV ?= ""
EVCC_GIT_URL ?= "${EVCC_REPO_DIR}"
EVCC_GIT_PROTOCOL ?= "file"
SRCREV = "${EVCC_SRCREV}"
SRC_URI = "git://${EVCC_GIT_URL};protocol=${EVCC_GIT_PROTOCOL};nobranch=1"
PV = "0.1.0+git"
S = "${WORKDIR}/git"

python () {
    if not d.getVar('EVCC_SRCREV'):
        raise bb.parse.SkipRecipe("no evcc release prepared (EVCC_SRCREV): run 'node scripts/release-shrinkwrap.mjs' in the evcc checkout")
}

inherit allarch

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}/init.d ${D}${sbindir}
    install -m 0755 ${S}/boot/initramfs/evccmeasure ${D}/init.d/89-evccmeasure
    install -m 0755 ${S}/boot/initramfs/evcc-measure-rootfs ${D}${sbindir}/evcc-measure-rootfs
}

FILES:${PN} = "/init.d/89-evccmeasure ${sbindir}/evcc-measure-rootfs"
# tpm2-tools loads its TCTI with dlopen (no shlib dependency is seen): the device TCTI is named here. The hook uses
# sha256sum, head, od, mktemp and dirname from the base utilities (busybox).
RDEPENDS:${PN} = "initramfs-framework-base tpm2-tools libtss2-tcti-device ${VIRTUAL-RUNTIME_base-utils}"

SUMMARY = "EVCC: EV-side ISO 15118 communication controller runtime (SLAC, SDP, TLS, EXI, TPM-bound keys, OTA root-CA fetch)"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://README.md;beginline=1;endline=1;md5=${EVCC_README_MD5}"
EVCC_README_MD5 ?= "set-by-release"

# The npm class fetches every dependency from npm-shrinkwrap.json at build time (no downloads on the device) and
# builds the native parts (hal/plc/native AF_PACKET addon, serialport) against the target's Node headers.
SRC_URI = "git://${EVCC_GIT_URL};protocol=https;branch=main \
           npmsw://${THISDIR}/${BPN}/npm-shrinkwrap.json \
           file://evcc.wrapper \
          "
EVCC_GIT_URL ?= "example.invalid/evcc.git"
SRCREV ?= "${AUTOREV}"
PV = "0.1+git"
S = "${WORKDIR}/git"

inherit npm systemd useradd

# The device runs the compiled tree (dist/), never TypeScript through a transpiler.
do_compile:append() {
    cd ${S} && ${STAGING_BINDIR_NATIVE}/node scripts/build.mjs
}

DEPENDS += "python3-native"
RDEPENDS:${PN} += "nodejs tpm2-tools libtss2-tcti-device rauc openssl iproute2"

USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system evcc; --system tss"
USERADD_PARAM:${PN} = "--system --home-dir /var/lib/evcc --no-create-home --shell /sbin/nologin -g evcc -G tss,dialout evcc"

SYSTEMD_SERVICE:${PN} = "evcc-boot.service evcc.service evcc-commit.service"
SYSTEMD_AUTO_ENABLE = "enable"

do_install:append() {
    install -d ${D}${systemd_system_unitdir} ${D}${sysconfdir}/evcc ${D}${nonarch_libdir}/tmpfiles.d ${D}${bindir}
    install -m 0644 ${S}/deploy/systemd/evcc-boot.service ${S}/deploy/systemd/evcc.service \
                    ${S}/deploy/systemd/evcc-commit.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/deploy/systemd/evcc.tmpfiles.conf ${D}${nonarch_libdir}/tmpfiles.d/evcc.conf
    # Readable by the runtime (group evcc), writable by root only.
    install -m 0640 -o root -g evcc ${S}/deploy/config/evcc.bench.json ${D}${sysconfdir}/evcc/evcc.json
    install -m 0755 ${WORKDIR}/evcc.wrapper ${D}${bindir}/evcc
}
FILES:${PN} += "${systemd_system_unitdir} ${nonarch_libdir}/tmpfiles.d ${sysconfdir}/evcc"
CONFFILES:${PN} = "${sysconfdir}/evcc/evcc.json"

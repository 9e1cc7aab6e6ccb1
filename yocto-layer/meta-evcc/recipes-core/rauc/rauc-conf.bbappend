# A/B slots for the EVCC bundle; the OEM keyring verifies every bundle (the same keyring evcc-boot uses).
FILESEXTRAPATHS:prepend := "${THISDIR}/files:"
SRC_URI:append = " file://system.conf file://oem-bundle-keyring.pem"
do_install:append() {
    install -m 0644 ${WORKDIR}/oem-bundle-keyring.pem ${D}${sysconfdir}/rauc/keyring.pem
}

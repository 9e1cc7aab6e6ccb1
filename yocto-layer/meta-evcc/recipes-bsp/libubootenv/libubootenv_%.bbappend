# fw_printenv/fw_setenv (RAUC's U-Boot backend) read and write the environment U-Boot keeps on the boot partition:
# the Raspberry Pi U-Boot configurations store it in the FAT file uboot.env (CONFIG_ENV_IS_IN_FAT, 16 KiB).
# The boot partition is mounted at /boot/firmware (wic/evcc-rpi-ab.wks.in).
FILESEXTRAPATHS:prepend := "${THISDIR}/files:"
SRC_URI:append:rpi = " file://fw_env.config"
do_install:append:rpi() {
    install -d ${D}${sysconfdir}
    install -m 0644 ${WORKDIR}/fw_env.config ${D}${sysconfdir}/fw_env.config
}

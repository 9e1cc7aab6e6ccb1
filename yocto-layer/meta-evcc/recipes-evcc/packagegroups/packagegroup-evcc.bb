SUMMARY = "Everything the bench vehicle controller image needs for the EVCC runtime"
LICENSE = "MIT"
inherit packagegroup
# tcpdump comes from meta-networking (LAYERDEPENDS networking-layer); fw_printenv/fw_setenv (libubootenv-bin) are
# RAUC's interface to the U-Boot environment (system.conf bootloader=uboot).
RDEPENDS:${PN} = "evcc tpm2-tools rauc libubootenv-bin iproute2 ethtool tcpdump"
# Kernel modules, if the kernel configuration builds them as modules: the TPM and QCA7000 SPI drivers
# (evcc-rpi.inc), squashfs/loop/dm-verity for mounting RAUC bundles.
RRECOMMENDS:${PN} = "kernel-module-tpm-tis-spi kernel-module-qcaspi kernel-module-squashfs kernel-module-loop \
                     kernel-module-dm-mod kernel-module-dm-verity"

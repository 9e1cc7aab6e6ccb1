SUMMARY = "EVCC measured-boot initramfs: measures the installed slot's root file system into TPM PCR 14, then switches root"
DESCRIPTION = "initramfs-framework with udev and the evccmeasure module: nothing from the root file system runs \
before its measurement. evcc-image points INITRAMFS_IMAGE here (boot/README.md, chain of trust)."
LICENSE = "MIT"

INITRAMFS_SCRIPTS ?= "initramfs-framework-base initramfs-module-udev initramfs-module-evcc-measure"
PACKAGE_INSTALL = "${INITRAMFS_SCRIPTS} ${VIRTUAL-RUNTIME_base-utils} udev base-passwd"
# The TPM's SPI driver and the SPI controller, where the kernel builds them as modules (the Raspberry Pi kernels do);
# attempt-only because a kernel with them built in has no such packages.
PACKAGE_INSTALL_ATTEMPTONLY += "kernel-module-tpm-tis-spi kernel-module-tpm-tis-core kernel-module-spi-bcm2835"

# Nothing of the root file system's features in the initramfs, and no kernel in it (U-Boot loads the kernel beside it).
IMAGE_FEATURES = ""
IMAGE_LINGUAS = ""
PACKAGE_EXCLUDE = "kernel-image-*"
IMAGE_NAME_SUFFIX ?= ""
IMAGE_FSTYPES = "${INITRAMFS_FSTYPES}"

inherit core-image

IMAGE_ROOTFS_SIZE = "8192"
IMAGE_ROOTFS_EXTRA_SPACE = "0"

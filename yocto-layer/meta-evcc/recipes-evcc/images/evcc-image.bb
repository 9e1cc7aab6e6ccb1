SUMMARY = "EVCC bench vehicle controller image (Raspberry Pi, TPM 2.0 HAT, QCA7000): runtime, RAUC A/B, SD card"
LICENSE = "MIT"

inherit core-image

# The kernel lives in the root file system (/boot), like the initramfs: boot.scr loads both from the slot it
# boots, so a RAUC update replaces kernel, initramfs and root file system together.
IMAGE_INSTALL:append = " packagegroup-evcc kernel-image"

# SD card with boot, slot A, slot B and /data (wic/evcc-rpi-ab.wks.in); ext4 is the slot image a RAUC bundle
# carries, and slot A of the card is that very ext4 (rawcopy), so the wic task runs after the ext4 one.
IMAGE_FSTYPES = "wic.bz2 wic.bmap ext4"
WKS_FILE = "evcc-rpi-ab.wks.in"
IMAGE_TYPEDEP:wic += "ext4"
do_image_wic[depends] += "rpi-u-boot-scr:do_deploy u-boot:do_deploy"

# Measured boot measures the slot as it runs (boot/README.md): nothing may remount / read-write.
IMAGE_FEATURES += "read-only-rootfs"

# The measured-boot initramfs (recipes-evcc-boot). It is not bundled into the kernel: U-Boot loads it beside the
# kernel from the slot (/boot/initramfs.cpio.gz), so it is part of what an update replaces. The initramfs recipe
# builds cpio.gz (its IMAGE_FSTYPES).
INITRAMFS_IMAGE = "evcc-initramfs"
do_rootfs[depends] += "${INITRAMFS_IMAGE}:do_image_complete"

# /var/lib/evcc (certificate store, TPM-wrapped blobs, tickets, logs) must survive an update of the root file
# system: it is a bind mount of /data/evcc, and the data partition is populated from this image's /data at build.
# The mounts go into the image's fstab (slot A is a raw copy of the ext4, which wic cannot edit); the mount points
# exist in the image because the root is read-only.
ROOTFS_POSTPROCESS_COMMAND += "evcc_install_initramfs evcc_persistent_state"

evcc_install_initramfs() {
    initramfs=""
    for candidate in ${DEPLOY_DIR_IMAGE}/${INITRAMFS_IMAGE}-${MACHINE}.rootfs.cpio.gz \
                     ${DEPLOY_DIR_IMAGE}/${INITRAMFS_IMAGE}-${MACHINE}.cpio.gz; do
        if [ -e "$candidate" ]; then initramfs="$candidate"; break; fi
    done
    [ -n "$initramfs" ] || bbfatal "no ${INITRAMFS_IMAGE} cpio.gz for ${MACHINE} in ${DEPLOY_DIR_IMAGE}"
    install -d ${IMAGE_ROOTFS}/boot
    install -m 0644 "$initramfs" ${IMAGE_ROOTFS}/boot/initramfs.cpio.gz
}

evcc_persistent_state() {
    # Numeric ids from the image's own passwd (the host's names mean nothing here).
    uid=$(awk -F: '$1 == "evcc" { print $3 }' ${IMAGE_ROOTFS}${sysconfdir}/passwd)
    gid=$(awk -F: '$1 == "evcc" { print $3 }' ${IMAGE_ROOTFS}${sysconfdir}/group)
    [ -n "$uid" ] && [ -n "$gid" ] || bbfatal "user/group evcc missing from the image (packagegroup-evcc)"
    install -d -m 0755 ${IMAGE_ROOTFS}/data ${IMAGE_ROOTFS}/boot/firmware
    install -d -m 0700 -o "$uid" -g "$gid" ${IMAGE_ROOTFS}/data/evcc ${IMAGE_ROOTFS}/var/lib/evcc
    # p1: firmware and uboot.env (fw_setenv as root only); p4: data. Device names as in system.conf.
    printf '/dev/mmcblk0p1\t/boot/firmware\tvfat\tdefaults,noatime,umask=0077\t0\t2\n' >> ${IMAGE_ROOTFS}${sysconfdir}/fstab
    printf '/dev/mmcblk0p4\t/data\text4\tdefaults,noatime,nosuid,nodev\t0\t2\n' >> ${IMAGE_ROOTFS}${sysconfdir}/fstab
    printf '/data/evcc\t/var/lib/evcc\tnone\tbind\t0\t0\n' >> ${IMAGE_ROOTFS}${sysconfdir}/fstab
}

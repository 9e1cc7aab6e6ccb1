# meta-raspberrypi's boot script boots one root file system from the FAT partition. Ours (same file name, found
# first through FILESEXTRAPATHS) implements RAUC's U-Boot A/B protocol; the recipe substitutes
# @@KERNEL_IMAGETYPE@@ and @@KERNEL_BOOTCMD@@ and compiles it to boot.scr as before.
FILESEXTRAPATHS:prepend := "${THISDIR}/files:"

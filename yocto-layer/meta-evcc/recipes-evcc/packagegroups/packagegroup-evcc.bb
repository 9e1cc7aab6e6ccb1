SUMMARY = "Everything the bench vehicle controller image needs for the EVCC runtime"
LICENSE = "MIT"
inherit packagegroup
RDEPENDS:${PN} = "evcc tpm2-tools rauc iproute2 ethtool tcpdump"

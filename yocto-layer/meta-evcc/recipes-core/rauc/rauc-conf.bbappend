# A/B slots for the EVCC image and the OEM bundle keyring (the same keyring evcc-boot verifies the bundle with).
# meta-rauc's rauc-conf already fetches file://system.conf and ${RAUC_KEYRING_URI}: our files win through
# FILESEXTRAPATHS, and RAUC_KEYRING_FILE replaces meta-rauc's example CA (ca.cert.pem) instead of installing both.
# Installed as /etc/rauc/keyring.pem, the path evcc-boot reads (deploy/config/evcc.bench.json tpm.keyring). A product build
# replaces it with the OEM CA certificate (README).
FILESEXTRAPATHS:prepend := "${THISDIR}/files:"
RAUC_KEYRING_FILE = "keyring.pem"

# Command list for the linux-initiator VM (busybox sh, sourced after the VM's init has
# discovered the target and logged in): write DATA_FILE to a LUN with O_DIRECT, log out,
# log in again (optionally first with a wrong CHAP secret, which must be refused), and read
# the bytes back with O_DIRECT. The host compares the @@ markers.
# Variables (run.sh -E): DATA_FILE DATA_MIB DATA_LUN [CHAP_USER CHAP_PASS BAD_PASS]
fail() { echo "@@FAIL $*"; exit 1; }
IQN=$T1_IQN
DEV=$(sd_of "$DATA_LUN")
[ -n "$IQN" ] || fail "no logged-in target"
[ -n "$DEV" ] || fail "no sd node for LUN $DATA_LUN"
echo "@@MD5_FILE $(md5sum "$DATA_FILE" | cut -d' ' -f1)"
echo "@@SESSION 1"
run iscsiadm -m session -P 2

run dd if="$DATA_FILE" of="$DEV" bs=1M count="$DATA_MIB" oflag=direct || fail "O_DIRECT write to $DEV"
run iscsiadm -m node -T "$IQN" -p "$PORTAL" --logout || fail "logout"
i=0
while [ $i -lt 100 ] && [ -n "$(ls /sys/class/scsi_generic 2>/dev/null)" ]; do i=$((i+1)); sleep 0.1; done
[ -z "$(ls /sys/class/scsi_generic 2>/dev/null)" ] || fail "LUNs still attached 10 s after logout"
echo "@@LOGGED_OUT"

# iscsiadm exit 24 = ISCSI_ERR_LOGIN_AUTH_FAILED (login status 0x0201, authentication failure)
if [ -n "${BAD_PASS:-}" ]; then
    # open-iscsi offers CHAP whenever a username is set, whatever authmethod says: clear it
    iscsiadm -m node -T "$IQN" -p "$PORTAL" -o update -n node.session.auth.authmethod -v None
    iscsiadm -m node -T "$IQN" -p "$PORTAL" -o update -n node.session.auth.username -v ""
    iscsiadm -m node -T "$IQN" -p "$PORTAL" -o update -n node.session.auth.password -v ""
    expect_rc 24 timeout 60 iscsiadm -m node -T "$IQN" -p "$PORTAL" --login || fail "login without CHAP was not refused as an authentication failure"
    echo "@@NO_CHAP_REFUSED"
    iscsiadm -m node -T "$IQN" -p "$PORTAL" -o update -n node.session.auth.authmethod -v CHAP
    iscsiadm -m node -T "$IQN" -p "$PORTAL" -o update -n node.session.auth.username -v "$CHAP_USER"
    iscsiadm -m node -T "$IQN" -p "$PORTAL" -o update -n node.session.auth.password -v "$BAD_PASS"
    expect_rc 24 timeout 60 iscsiadm -m node -T "$IQN" -p "$PORTAL" --login || fail "login with a wrong CHAP secret was not refused as an authentication failure"
    echo "@@BAD_CHAP_REFUSED"
    iscsiadm -m node -T "$IQN" -p "$PORTAL" -o update -n node.session.auth.password -v "$CHAP_PASS"
fi

run timeout 60 iscsiadm -m node -T "$IQN" -p "$PORTAL" --login || fail "login again"
harness_wait_devices 20 || fail "LUNs did not come back after the second login"
harness_scan_luns
. /run/harness/luns.env
DEV=$(sd_of "$DATA_LUN")
[ -n "$DEV" ] || fail "no sd node for LUN $DATA_LUN after the second login"
echo "@@SESSION 2"
run iscsiadm -m session -P 2
run dd if="$DEV" of=/tmp/readback bs=1M count="$DATA_MIB" iflag=direct || fail "O_DIRECT read from $DEV"
echo "@@MD5_READ $(md5sum /tmp/readback | cut -d' ' -f1)"
cmp "$DATA_FILE" /tmp/readback || fail "read-back differs from what was written"
echo "@@DONE"

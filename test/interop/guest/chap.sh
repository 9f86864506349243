# Command list for the linux-initiator VM (busybox sh, run.sh -L: this list logs in itself):
# CHAP from the Linux kernel initiator against three targets: one-way CHAP (ONEWAY_IQN),
# mutual CHAP (MUTUAL_IQN), and an ACL entry with its own mutual credentials (ACL_IQN).
# Each good login writes 1 MiB with O_DIRECT, reads it back and prints the md5; the refused
# ones print iscsiadm's exit code (24 = ISCSI_ERR_LOGIN_AUTH_FAILED).
# Variables (run.sh -E): ONEWAY_IQN ONEWAY_USER ONEWAY_PASS, MUTUAL_IQN MUTUAL_USER
#   MUTUAL_PASS MUTUAL_TUSER MUTUAL_TPASS, ACL_IQN ACL_USER ACL_PASS ACL_TUSER ACL_TPASS,
#   BAD_PASS. Files: data.bin (1 MiB).
# Markers: "@@NAME value"; "@@FAIL why" and exit 1 on the first unexpected failure; "@@DONE".
fail() { echo "@@FAIL $*"; exit 1; }
DATA=/harness/files/data.bin

# auth IQN USER PASS [USER_IN PASS_IN]: the node's CHAP settings (empty USER: no CHAP at all;
# open-iscsi offers CHAP whenever a username is set, whatever authmethod says)
auth() {
    set_() { iscsiadm -m node -T "$1" -p "$PORTAL" -o update -n "$2" -v "$3" >/dev/null || fail "set $2 on $1"; }
    if [ -n "$2" ]; then set_ "$1" node.session.auth.authmethod CHAP; else set_ "$1" node.session.auth.authmethod None; fi
    set_ "$1" node.session.auth.username "$2"
    set_ "$1" node.session.auth.password "$3"
    set_ "$1" node.session.auth.username_in "${4:-}"
    set_ "$1" node.session.auth.password_in "${5:-}"
}

# try NAME IQN: a login that must be refused; prints "@@RC_NAME rc" and iscsiadm's message
try() {
    timeout 60 iscsiadm -m node -T "$2" -p "$PORTAL" --login >/tmp/login.out 2>&1; rc=$?
    cat /tmp/login.out
    echo "@@RC_$1 $rc"
    echo "@@MSG_$1 $(sed -n 's/^iscsiadm: initiator reported error (\(.*\))$/\1/p' /tmp/login.out | head -1)"
    iscsiadm -m session 2>/dev/null | grep -q " $2\( \|$\)" && fail "$1: a session to $2 exists after a refused login"
    return 0
}

# good NAME IQN: log in, show the session's CHAP, write and read back 1 MiB, log out
good() {
    run timeout 60 iscsiadm -m node -T "$2" -p "$PORTAL" --login || fail "$1: login to $2"
    echo "@@RC_$1 0"
    harness_wait_devices 20 || fail "$1: LUNs did not appear"
    harness_scan_luns; . /run/harness/luns.env
    iscsiadm -m session -P 2 >/tmp/sess.out 2>&1; cat /tmp/sess.out
    echo "@@USER_$1 $(sed -n 's/^[[:space:]]*username: //p' /tmp/sess.out | head -1)"
    echo "@@USER_IN_$1 $(sed -n 's/^[[:space:]]*username_in: //p' /tmp/sess.out | head -1)"
    dev=$(sd_of 0 1)
    [ -n "$dev" ] || fail "$1: no sd node"
    dd if="$DATA" of="$dev" bs=1M count=1 oflag=direct 2>/dev/null || fail "$1: O_DIRECT write"
    dd if="$dev" of=/tmp/rb bs=1M count=1 iflag=direct 2>/dev/null || fail "$1: O_DIRECT read"
    echo "@@MD5_$1 $(md5sum /tmp/rb | cut -d' ' -f1)"
    run iscsiadm -m node -T "$2" -p "$PORTAL" --logout || fail "$1: logout"
    i=0
    while [ $i -lt 100 ] && [ -n "$(ls /sys/class/scsi_generic 2>/dev/null)" ]; do i=$((i+1)); sleep 0.1; done
    [ -z "$(ls /sys/class/scsi_generic 2>/dev/null)" ] || fail "$1: LUNs still attached 10 s after logout"
}

echo "@@MD5_FILE $(md5sum "$DATA" | cut -d' ' -f1)"
iscsiadm -m discovery -t st -p "$PORTAL" >/tmp/disc 2>&1; cat /tmp/disc
for iqn in "$ONEWAY_IQN" "$MUTUAL_IQN" "$ACL_IQN"; do
    iscsiadm -m node -T "$iqn" -p "$PORTAL" -o new >/dev/null || fail "node $iqn"
done

# ---- one-way CHAP
auth "$ONEWAY_IQN" "" ""
try ONEWAY_NO_CHAP "$ONEWAY_IQN"
auth "$ONEWAY_IQN" "$ONEWAY_USER" "$BAD_PASS"
try ONEWAY_BAD_SECRET "$ONEWAY_IQN"
auth "$ONEWAY_IQN" "nosuchuser" "$ONEWAY_PASS"
try ONEWAY_BAD_USER "$ONEWAY_IQN"
auth "$ONEWAY_IQN" "$ONEWAY_USER" "$ONEWAY_PASS"
good ONEWAY "$ONEWAY_IQN"

# ---- mutual CHAP: the target proves itself with MUTUAL_TUSER/MUTUAL_TPASS
auth "$MUTUAL_IQN" "$MUTUAL_USER" "$BAD_PASS" "$MUTUAL_TUSER" "$MUTUAL_TPASS"
try MUTUAL_BAD_SECRET "$MUTUAL_IQN"
# the initiator expects another target secret: the target's answer does not match, the
# initiator gives up (the target never sees the session through)
auth "$MUTUAL_IQN" "$MUTUAL_USER" "$MUTUAL_PASS" "$MUTUAL_TUSER" "$BAD_PASS"
try MUTUAL_TARGET_FAILS "$MUTUAL_IQN"
auth "$MUTUAL_IQN" "$MUTUAL_USER" "$MUTUAL_PASS" "$MUTUAL_TUSER" "$MUTUAL_TPASS"
good MUTUAL "$MUTUAL_IQN"

# ---- an ACL entry's own mutual credentials; the target-level ones of MUTUAL_IQN do not open it
auth "$ACL_IQN" "$MUTUAL_USER" "$MUTUAL_PASS" "$MUTUAL_TUSER" "$MUTUAL_TPASS"
try ACL_OTHER_CREDENTIALS "$ACL_IQN"
auth "$ACL_IQN" "$ACL_USER" "$ACL_PASS" "$ACL_TUSER" "$ACL_TPASS"
good ACL "$ACL_IQN"
echo "@@DONE"

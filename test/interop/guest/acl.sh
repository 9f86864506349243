# Command list for the linux-initiator VM (busybox sh): access control seen from the Linux
# kernel initiator, with two initiator names in one guest. The VM's init has discovered and
# logged in as VM_IQN (run.sh -i) to A and B; a second open-iscsi iface carries VMB_IQN.
#   VM_IQN:  A's LUNs 0,1 = A's 1,2; B's LUN 0 = B's 0      VMB_IQN: B's LUN 0 = B's 1
# 1. discovery, a denied login and REPORT LUNS for each name, with the serials behind the
#    LUN numbers;
# 2. sg_xcopy and ddpt --odx between VM_IQN's LUNs, within A and from A to B (destinations
#    read back, md5);
# 3. break-out attempts with sg_raw (parameter lists built on the host, in acl/): EXTENDED
#    COPY naming by NAA an LU the issuing initiator is not mapped to, and WRITE USING TOKEN
#    by VMB_IQN with a token VM_IQN populated; each prints its status and raw sense bytes.
# Variables (run.sh -E): A_IQN B_IQN C_IQN VMB_IQN DATA_MIB. Files: acl/*.bin, data.bin.
# Markers: "@@NAME value"; "@@FAIL why" and exit 1 on the first unexpected failure; "@@DONE".
fail() { echo "@@FAIL $*"; exit 1; }
F=/harness/files/acl
DATA=/harness/files/data.bin
BLOCKS=$((DATA_MIB * 2048))

# words -> one line, sorted, space separated
words() { tr -s ' \n' '\n\n' | sed '/^$/d' | sort | tr '\n' ' ' | sed 's/ $//'; }
disc_targets() { awk '{print $2}' "$1" | words; }
luns_of() { sg_luns "$1" 2>&1 | sed -n 's/^ *\([0-9a-f]\{16\}\)$/\1/p' | words; }
serial_of() { sg_vpd -p sn "$1" 2>/dev/null | sed -n 's/^ *Unit serial number: *//p'; }
blocks_of() { sg_readcap "$1" 2>/dev/null | sed -n 's/.*Last LBA=\([0-9]*\).*/\1/p'; }
be32() { printf '%02x %02x %02x %02x' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) $(($1 & 255)); }

# raw NAME SG FILE CDB-BYTES...: send FILE as the data-out of the CDB; prints
# "@@RAW_NAME rc=RC status=STATUS sense=HEX" (sense empty when there is none)
raw() {
    name=$1; sg=$2; file=$3; shift 3
    sg_raw -vv -s "$(wc -c <"$file")" -i "$file" "$sg" "$@" >/tmp/raw.out 2>&1; rc=$?
    echo; echo "### \$ sg_raw -vv -s $(wc -c <"$file") -i $file $sg $*"; cat /tmp/raw.out
    status=$(sed -n 's/^SCSI Status: *\(.*[^ ]\) *$/\1/p' /tmp/raw.out | head -1 | tr ' ' _)
    sense=$(awk '/Raw sense data/ {f = 1; next} f && /^ +[0-9a-f][0-9a-f]( |$)/ {for (i = 1; i <= NF; i++) s = s " " $i; next} f {f = 0} END {print s}' /tmp/raw.out | sed 's/^ //')
    echo "@@RAW_$name rc=$rc status=$status sense=$sense"
}
# EXTENDED COPY (LID1): 83h, SA 00h, parameter list length in bytes 10-13
xcopy() { raw "$1" "$2" "$3" 83 00 00 00 00 00 00 00 00 00 $(be32 "$(wc -c <"$3")") 00 00; }
# WRITE USING TOKEN: 83h, SA 11h, list identifier in 6-9, parameter list length in 10-13
wut() { raw "$1" "$2" "$3" 83 11 00 00 00 00 $(be32 "$4") $(be32 "$(wc -c <"$3")") 00 00; }

# ---- 1. VM_IQN: discovery, login to C refused, its LUNs on A and B
iscsiadm -m discovery -t st -p "$PORTAL" >/tmp/disc 2>&1; cat /tmp/disc
echo "@@DISC_VM $(disc_targets /tmp/disc)"
iscsiadm -m node -T "$C_IQN" -p "$PORTAL" -o new >/dev/null
run timeout 60 iscsiadm -m node -T "$C_IQN" -p "$PORTAL" --login; echo "@@LOGIN_VM_C $?"
iscsiadm -m node -T "$C_IQN" -p "$PORTAL" -o delete
[ "$T1_IQN" = "$A_IQN" ] && [ "$T2_IQN" = "$B_IQN" ] || fail "sessions are '$T1_IQN' '$T2_IQN', not A and B"
SG0=$(sg_of 0); SG1=$(sg_of 1); SD0=$(sd_of 0); SD1=$(sd_of 1)
[ -n "$SG0" ] && [ -n "$SG1" ] && [ -n "$SD0" ] && [ -n "$SD1" ] || fail "LUN 0/1 of target A missing"
XSG0=$(sg_of 0 2); XSD0=$(sd_of 0 2)
[ -n "$XSG0" ] && [ -n "$XSD0" ] || fail "LUN 0 of target B missing"
run sg_luns "$SG0"
echo "@@LUNS_VM_A $(luns_of "$SG0")"
echo "@@LUNS_VM_B $(luns_of "$XSG0")"
echo "@@SERIAL_VM_A0 $(serial_of "$SG0")"
echo "@@SERIAL_VM_A1 $(serial_of "$SG1")"
echo "@@SERIAL_VM_B0 $(serial_of "$XSG0")"
echo "@@LAST_LBA_VM_A0 $(blocks_of "$SG0")"
echo "@@LAST_LBA_VM_A1 $(blocks_of "$SG1")"
echo "@@LAST_LBA_VM_B0 $(blocks_of "$XSG0")"

# ---- the second name: an iface with its own InitiatorName
iscsiadm -m iface -I vmb -o new >/dev/null || fail "iface vmb"
iscsiadm -m iface -I vmb -o update -n iface.initiatorname -v "$VMB_IQN" >/dev/null || fail "iface vmb initiatorname"
iscsiadm -m discovery -t st -p "$PORTAL" -I vmb >/tmp/disc 2>&1; cat /tmp/disc
echo "@@DISC_VMB $(disc_targets /tmp/disc)"
iscsiadm -m node -T "$A_IQN" -p "$PORTAL" -I vmb -o new >/dev/null
run timeout 60 iscsiadm -m node -T "$A_IQN" -p "$PORTAL" -I vmb --login; echo "@@LOGIN_VMB_A $?"
iscsiadm -m node -T "$A_IQN" -p "$PORTAL" -I vmb -o delete
iscsiadm -m node -T "$B_IQN" -p "$PORTAL" -I vmb -o new >/dev/null
run timeout 60 iscsiadm -m node -T "$B_IQN" -p "$PORTAL" -I vmb --login || fail "VMB_IQN login to B"
harness_wait_devices 20 || fail "B's LUN did not appear"
harness_scan_luns; . /run/harness/luns.env
cat /run/harness/luns
run iscsiadm -m session -P 1
[ "$T3_IQN" = "$B_IQN" ] || fail "third session is $T3_IQN, not B"
BSG0=$(sg_of 0 3); BSD0=$(sd_of 0 3)
[ -n "$BSG0" ] && [ -n "$BSD0" ] || fail "VMB_IQN's LUN 0 missing"
echo "@@LUNS_VMB $(luns_of "$BSG0")"
echo "@@SERIAL_VMB_0 $(serial_of "$BSG0")"
echo "@@LAST_LBA_VMB_0 $(blocks_of "$BSG0")"

# ---- 2. copies VM_IQN may make: A1 -> A2, and A1 -> B0 (B's ACL names it too, no CHAP)
echo "@@MD5_FILE $(md5sum "$DATA" | cut -d' ' -f1)"
run dd if="$DATA" of="$SD0" bs=1M count="$DATA_MIB" oflag=direct || fail "O_DIRECT write of LUN 0"
readback() { # DEV MIB_OFFSET MARKER
    dd if="$1" of=/tmp/rb bs=1M skip="$2" count="$DATA_MIB" iflag=direct 2>/dev/null || fail "read back $1 @ $2 MiB"
    echo "@@$3 $(md5sum /tmp/rb | cut -d' ' -f1)"
}
run sg_xcopy verbose=1 if="$SG0" of="$SG1" bs=512 count="$BLOCKS" || fail "sg_xcopy LUN 0 -> LUN 1"
readback "$SD1" 0 MD5_SG_XCOPY
run sg_xcopy verbose=1 if="$SG0" of="$XSG0" bs=512 count="$BLOCKS" || fail "sg_xcopy A1 -> B0"
readback "$XSD0" 0 MD5_SG_XCOPY_CROSS
. /harness/files/ddpt-odx-client.sh
ddpt_odx_probe "$SG0" "$SG1"
run ddpt if="$SG0" of="$SG1" bs=512 skip=$(rng 0 $BLOCKS) seek=$(rng $((BLOCKS * 2)) $BLOCKS) --odx verbose=1 ||
    fail "ddpt --odx LUN 0 -> LUN 1"
readback "$SD1" $((DATA_MIB * 2)) MD5_DDPT_ODX
run ddpt if="$SG0" of="$XSG0" bs=512 skip=$(rng 0 $BLOCKS) seek=$(rng $((BLOCKS * 2)) $BLOCKS) --odx verbose=1 ||
    fail "ddpt --odx A1 -> B0"
readback "$XSD0" $((DATA_MIB * 2)) MD5_DDPT_ODX_CROSS

# ---- 3. break-out attempts: EXTENDED COPY naming unmapped LUs by NAA
xcopy XC_OWN_OK "$SG0" $F/xc-own-ok.bin                 # A1 -> A2, both mapped (control)
xcopy XC_CROSS_OK "$SG0" $F/xc-cross-ok.bin             # A1 -> B0, both mapped (control)
xcopy XC_TO_A0 "$SG0" $F/xc-to-a0.bin                   # A1 -> A0: A0 is not in VM_IQN's map
xcopy XC_FROM_A0 "$SG0" $F/xc-from-a0.bin               # A0 -> A2
xcopy XC_TO_B1 "$SG0" $F/xc-to-b1.bin                   # A1 -> B1: B names VM_IQN, maps it B0 only
xcopy XC_B_TO_A0 "$XSG0" $F/xc-b-to-a0.bin              # on B: B0 -> A0, not in its map of A
xcopy XC_TO_C0 "$SG0" $F/xc-to-c0.bin                   # A1 -> C0: C's ACL does not name VM_IQN
xcopy XC_VMB_FROM_A1 "$BSG0" $F/xc-vmb-from-a1.bin      # VMB_IQN: A1 -> B1, A not its target
xcopy XC_VMB_TO_B0 "$BSG0" $F/xc-vmb-to-b0.bin          # VMB_IQN: B1 -> B0, B0 not in its map

# ---- ROD token populated by VM_IQN (A1 [0, 2048)), used by VMB_IQN, then by VM_IQN
rm -f /tmp/a1.tok
run ddptctl --pt=$(rng 0 2048) --rtf=/tmp/a1.tok -v "$SG0" >/tmp/pt.out 2>&1; rc=$?
cat /tmp/pt.out; [ $rc = 0 ] || fail "ddptctl --pt"
echo "@@PT_TC $(sed -n 's/^PT completes with a transfer count of \([0-9]*\).*/\1/p' /tmp/pt.out)"
echo "@@TOKEN_BYTES $(wc -c </tmp/a1.tok)"
cat $F/wut-head.bin /tmp/a1.tok $F/wut-tail.bin >/tmp/wut.bin
wut WUT_VMB "$BSG0" /tmp/wut.bin 77                       # B1 [98304, 2048) <- A1's token
wut WUT_VM "$SG1" /tmp/wut.bin 78                         # A2 [98304, 2048) <- A1's token (control)
dd if="$SD1" of=/tmp/rb bs=1M skip=48 count=1 iflag=direct 2>/dev/null || fail "read back A2 @ 48 MiB"
echo "@@MD5_WUT_VM $(md5sum /tmp/rb | cut -d' ' -f1)"
dd if="$DATA" of=/tmp/rb bs=1M count=1 2>/dev/null
echo "@@MD5_FILE_1MIB $(md5sum /tmp/rb | cut -d' ' -f1)"
echo "@@DONE"

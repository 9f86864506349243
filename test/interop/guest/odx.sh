# Command list for the linux-initiator VM (busybox sh): ODX (POPULATE TOKEN / WRITE USING
# TOKEN) from the kernel initiator's side with ddpt --odx and ddptctl (issue 5).
#  1. DATA_FILE (DATA_MIB MiB) is written to LUN 0; ddpt --odx copies it LUN 0 -> LUN 1 and
#     within LUN 0; each destination is read back with O_DIRECT and its md5 printed.
#  2. ddptctl step by step: --pt, --receive, --info, --all_toks, the source overwritten
#     (point in time), --wut with --del_tkn, --receive, --all_toks.
#  3. WHOLE_RUNS times, ddpt --odx of the whole of LUN 0 onto LUN 1, each between
#     "@@LO_BEGIN k" and "@@LO_END k" with 2 s of quiet on either side, so that the host can
#     read the loopback counters around it. The host compares the backing files afterwards.
# Variables (run.sh -E): DATA_FILE, DATA_MIB (32), WHOLE_RUNS (3).
# Markers: "@@NAME value" lines; "@@FAIL why" and exit 1 on the first failure; "@@DONE" last.
#
# ddpt 0.97 (Debian bookworm's, the one in the VM) writes every block device range
# descriptor of POPULATE TOKEN and WRITE USING TOKEN one byte early (ddpt_xcopy.c
# do_pop_tok/do_wut start at n = 15 / n = 535 instead of 16 / 536 since its 2018
# scatter-gather rework): the target reads LBA' = LBA << 8 | NUM >> 24 and
# NUM' = (NUM & 0xffffff) << 8. A correct target cannot tell that from a real request, so
# the list probes the client once (ddptctl --pt=0,1 and the transfer count that comes
# back) and, if it shifts, hands ddpt/ddptctl LBA/256 and NUM/256, so that the target is
# asked for exactly the intended ranges. Every range here is a multiple of 256 blocks.
# ddpt 0.97 --odx also refuses count= unless skip= is a gather list whose sum is count,
# and with neither it sends zero-length POPULATE TOKENs forever: so skip=/seek= are
# always LBA,NUM lists.
fail() { echo "@@FAIL $*"; exit 1; }
SRC_SG=$(sg_of 0); DST_SG=$(sg_of 1); SRC_SD=$(sd_of 0); DST_SD=$(sd_of 1)
[ -n "$SRC_SG" ] && [ -n "$DST_SG" ] && [ -n "$SRC_SD" ] && [ -n "$DST_SD" ] || fail "LUN 0/1 nodes missing"
DATA_MIB=${DATA_MIB:-32}
WHOLE_RUNS=${WHOLE_RUNS:-3}

# ---- the client's range descriptor encoding
# PT of 1 block at LBA 0: a correct client gets a transfer count of 1, ddpt 0.97 gets 256.
run ddptctl --pt=0,1 --rtf=/tmp/probe.tok "$SRC_SG" >/tmp/probe.out 2>&1
cat /tmp/probe.out
tc=$(sed -n 's/^PT completes with a transfer count of \([0-9]*\).*/\1/p' /tmp/probe.out)
case "$tc" in
    1) SHIFT=1 ;;
    256) SHIFT=256 ;;
    *) fail "probe: ddptctl --pt=0,1 gave transfer count '$tc'" ;;
esac
echo "@@SHIFT $SHIFT"
# delete the probe's token: WUT of 0 blocks with DEL_TKN (a zero-length range is a no-op)
run ddptctl --wut=0,0 --del_tkn --rtf=/tmp/probe.tok "$DST_SG" || fail "probe: WUT with DEL_TKN"

# rng LBA NUM -> "LBA,NUM" in the client's units
rng() {
    [ "$SHIFT" = 1 ] && { echo "$1,$2"; return; }
    [ $(($1 % 256)) = 0 ] && [ $(($2 % 256)) = 0 ] || fail "rng $1 $2: not a multiple of 256 blocks"
    echo "$(($1 / 256)),$(($2 / 256))"
}

BLOCKS=$((DATA_MIB * 2048))           # 512-byte blocks
echo "@@MD5_FILE $(md5sum "$DATA_FILE" | cut -d' ' -f1)"
run dd if="$DATA_FILE" of="$SRC_SD" bs=1M count="$DATA_MIB" oflag=direct || fail "O_DIRECT write of the source"

readback() { # DEV MIB_OFFSET MARKER
    dd if="$1" of=/tmp/rb bs=1M skip="$2" count="$DATA_MIB" iflag=direct 2>/dev/null || fail "read back $1 @ $2 MiB"
    echo "@@$3 $(md5sum /tmp/rb | cut -d' ' -f1)"
}
# count_toks DEV -> how many ROD management tokens REPORT ALL ROD TOKENS lists (ERR if it fails)
count_toks() {
    ddptctl --all_toks "$1" >/tmp/toks.out 2>&1 || { cat /tmp/toks.out >&2; echo ERR; return; }
    cat /tmp/toks.out >&2
    if grep -q 'No management ROD Tokens reported' /tmp/toks.out; then echo 0; else
        sed -n 's/^Number of managed ROD Token headers returned: \([0-9]*\).*/\1/p' /tmp/toks.out
    fi
}

# ---- ddpt --odx: LUN 0 [0, 32 MiB) -> LUN 1 @ 0, and -> LUN 0 @ 64 MiB
run ddpt if="$SRC_SG" of="$DST_SG" bs=512 skip=$(rng 0 $BLOCKS) seek=$(rng 0 $BLOCKS) --odx verbose=1 ||
    fail "ddpt --odx LUN0->LUN1"
readback "$DST_SD" 0 MD5_DDPT_LUN1
run ddpt if="$SRC_SG" of="$SRC_SG" bs=512 skip=$(rng 0 $BLOCKS) seek=$(rng 131072 $BLOCKS) --odx verbose=1 ||
    fail "ddpt --odx within LUN0"
readback "$SRC_SD" 64 MD5_DDPT_SAME

# ---- ddptctl step by step: PT on LUN 0, RRTI, the token file, REPORT ALL ROD TOKENS, the
# source overwritten (point in time), WUT with DEL_TKN onto LUN 1 @ 96 MiB, RRTI, REPORT ALL
# ROD TOKENS.
rm -f /tmp/rod.tok
run ddptctl --pt=$(rng 0 $BLOCKS) --rtf=/tmp/rod.tok -v "$SRC_SG" >/tmp/pt.out 2>&1; rc=$?
cat /tmp/pt.out; [ $rc = 0 ] || fail "ddptctl --pt"
echo "@@PT_TC $(sed -n 's/^PT completes with a transfer count of \([0-9]*\).*/\1/p' /tmp/pt.out)"
echo "@@RTF_BYTES $(wc -c </tmp/rod.tok)"
run ddptctl --receive "$SRC_SG" >/tmp/rrti.out 2>&1; rc=$?
cat /tmp/rrti.out; [ $rc = 0 ] || fail "ddptctl --receive after PT"
echo "@@RRTI_PT $(sed -n 's/^RRTI for \(.*\): \(.*\)$/\1: \2/p' /tmp/rrti.out | head -1)"
echo "@@RRTI_PT_TC $(sed -n 's/^ *transfer count of \([0-9]*\).*/\1/p' /tmp/rrti.out | head -1)"
run ddptctl --info --rtf=/tmp/rod.tok || fail "ddptctl --info"
echo "@@TOKS_AFTER_PT_LUN0 $(count_toks "$SRC_SG")"
echo "@@TOKS_AFTER_PT_LUN1 $(count_toks "$DST_SG")"
# point in time: the source changes after POPULATE TOKEN; the WUT must still deliver the old bytes
run dd if=/dev/zero of="$SRC_SD" bs=1M count="$DATA_MIB" oflag=direct || fail "overwrite of the source"
readback "$SRC_SD" 0 MD5_SOURCE_OVERWRITTEN
run ddptctl --wut=$(rng 196608 $BLOCKS) --del_tkn --rtf=/tmp/rod.tok -v "$DST_SG" >/tmp/wut.out 2>&1; rc=$?
cat /tmp/wut.out; [ $rc = 0 ] || fail "ddptctl --wut"
echo "@@WUT_TC $(sed -n 's/^WUT completes with a transfer count of \([0-9]*\).*/\1/p' /tmp/wut.out)"
run ddptctl --receive "$DST_SG" >/tmp/rrti.out 2>&1; rc=$?
cat /tmp/rrti.out; [ $rc = 0 ] || fail "ddptctl --receive after WUT"
echo "@@RRTI_WUT $(sed -n 's/^RRTI for \(.*\): \(.*\)$/\1: \2/p' /tmp/rrti.out | head -1)"
echo "@@RRTI_WUT_TC $(sed -n 's/^ *transfer count of \([0-9]*\).*/\1/p' /tmp/rrti.out | head -1)"
readback "$DST_SD" 96 MD5_DDPTCTL_WUT
# --del_tkn: the token is gone after the WRITE USING TOKEN
echo "@@TOKS_AFTER_WUT_LUN0 $(count_toks "$SRC_SG")"

# ---- whole LUN 0 -> LUN 1, bracketed for the host's loopback counters
CAP=$(sg_readcap -l "$SRC_SG" | sed -n 's/.*Number of logical blocks=\([0-9]*\).*/\1/p')
[ -n "$CAP" ] || fail "capacity of LUN 0"
echo "@@CAPACITY_BLOCKS $CAP"
k=1
while [ $k -le "$WHOLE_RUNS" ]; do
    echo "@@LO_BEGIN $k"; sleep 2
    run ddpt if="$SRC_SG" of="$DST_SG" bs=512 skip=$(rng 0 "$CAP") seek=$(rng 0 "$CAP") --odx verbose=1; rc=$?
    sleep 2; echo "@@LO_END $k"
    [ $rc = 0 ] || fail "ddpt --odx whole LUN 0 -> LUN 1 (run $k)"
    k=$((k + 1))
done
echo "@@DONE"

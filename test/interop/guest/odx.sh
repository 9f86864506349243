# Command list for the linux-initiator VM (busybox sh): ODX (POPULATE TOKEN / WRITE USING
# TOKEN) from the kernel initiator's side with ddpt --odx and ddptctl (issue 5).
#  0. Probe the client's range descriptor encoding (see below); a shifting ddpt is also run
#     once uncompensated, which the target must refuse (5/21/00) without writing anything.
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
# ddpt's range descriptors. ddpt 0.96 and 0.97 (0.97 is Debian bookworm's, the VM's) write every
# block device range descriptor of POPULATE TOKEN and WRITE USING TOKEN one byte early. Facts
# from ddpt's source (github doug-gilbert/ddpt, src/ddpt_xcopy.c, release-0.97 and trunk):
#   do_pop_tok(): for (k = 0, n = 15; k < elems; ...) { sg_put_unaligned_be64(lba, pl + n);
#                 n += 8; sg_put_unaligned_be32(num, pl + n); n += 4 + 4; }
#                 sg_put_unaligned_be16(sz_bdrd, pl + 14); len = n + 1;
#   do_wut():     the same loop from n = 535, then sg_put_unaligned_be16(sz_bdrd, pl + 534).
# SBC-3/4 put the first descriptor at byte 16 (PT, after a 16-byte header) and 536 (WUT), each
# descriptor LBA(8) NUMBER OF LOGICAL BLOCKS(4) reserved(4); ddpt's lengths (header field,
# DATA LENGTH = len - 2) are right, only the descriptors move. Up to 0.95 the loop wrote
# pl[++n] = ... (pre-increment: first byte at 16); svn trunk r313 (git 4331cad, 2015-12-02,
# "unaligned work") switched to sg_put_unaligned_be64(lba, pl + n) and kept n = 15 / 535.
# A standard target therefore reads LBA' = LBA << 8 | NUM >> 24 and NUM' = (NUM & 0xffffff) << 8,
# reserved bytes zero: a well-formed request for other blocks, which it cannot refuse. Where
# those blocks do not exist xcopyd answers 5/21/00 (LOGICAL BLOCK ADDRESS OUT OF RANGE) and
# creates/writes nothing: step 0b below runs ddpt uncompensated and checks that answer
# (test/odx/ddpt-layout.test.ts does the same byte for byte in-process).
# The workaround: probe once (ddptctl --pt=0,1: a standard client gets a transfer count of 1,
# the shifting one 256) and, if it shifts, hand ddpt/ddptctl LBA/256 and NUM/256 so the target
# is asked for exactly the intended ranges; every range here is a multiple of 256 blocks.
# Its limit: ddpt then counts in its own (1/256) units but advances by the transfer counts the
# target reports (odx_full_copy: "number requested (in|out) differs from transfer count"), so a
# copy is right only if ddpt serves it with ONE POPULATE TOKEN and ONE WRITE USING TOKEN (it
# splits only above MAXIMUM TOKEN TRANSFER SIZE, 2 GiB here). Each ddpt --odx below prints
# @@CHUNKS_<name> "<in warnings> <out warnings>": 1 1 when shifted (one PT, one WUT), 0 0 if not.
# ddpt 0.97 --odx also needs skip=/seek= as LBA,NUM lists: a bare skip=N is a one-element gather
# list of 0 blocks, so odx_full_copy refuses count= ("count= value not equal to the sum of
# gather nums") and without count= count_sgl_blocks_from() gives every PT 0 blocks, forever.
fail() { echo "@@FAIL $*"; exit 1; }
SRC_SG=$(sg_of 0); DST_SG=$(sg_of 1); SRC_SD=$(sd_of 0); DST_SD=$(sd_of 1)
[ -n "$SRC_SG" ] && [ -n "$DST_SG" ] && [ -n "$SRC_SD" ] && [ -n "$DST_SD" ] || fail "LUN 0/1 nodes missing"
DATA_MIB=${DATA_MIB:-32}
WHOLE_RUNS=${WHOLE_RUNS:-3}

# ---- the client's range descriptor encoding: ddpt_odx_probe sets SHIFT, rng converts (shared with acl.sh)
. /harness/files/ddpt-odx-client.sh
ddpt_odx_probe "$SRC_SG" "$DST_SG"

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

# odx NAME ddpt-args...: ddpt --odx, its output shown, then @@CHUNKS_NAME "<in> <out>": how often
# ddpt said the transfer count differed from what it asked for (see the top: 1 1 when shifted).
odx() {
    name=$1; shift
    run ddpt "$@" --odx verbose=1 >/tmp/ddpt.out 2>&1; rc=$?
    cat /tmp/ddpt.out
    echo "@@CHUNKS_$name $(grep -c 'requested (in) differs' /tmp/ddpt.out) $(grep -c 'requested (out) differs' /tmp/ddpt.out)"
    return $rc
}

# ---- 0b. ddpt uncompensated (shifting client only): its 32 MiB request reads as LBA 0 and
# 16 Mi blocks, past the LU: POPULATE TOKEN must fail with 5/21/00 and nothing may land on LUN 1.
if [ "$SHIFT" = 256 ]; then
    run ddpt if="$SRC_SG" of="$DST_SG" bs=512 skip=0,$BLOCKS seek=327680,$BLOCKS --odx verbose=1 >/tmp/raw.out 2>&1; rc=$?
    cat /tmp/raw.out
    echo "@@RAW_DDPT_RC $rc"
    echo "@@RAW_DDPT_OUT_OF_RANGE $(grep -c -i 'address out of range' /tmp/raw.out)"
    readback "$DST_SD" 160 MD5_RAW_DEST
fi

# ---- ddpt --odx: LUN 0 [0, 32 MiB) -> LUN 1 @ 0, and -> LUN 0 @ 64 MiB
odx LUN1 if="$SRC_SG" of="$DST_SG" bs=512 skip=$(rng 0 $BLOCKS) seek=$(rng 0 $BLOCKS) || fail "ddpt --odx LUN0->LUN1"
readback "$DST_SD" 0 MD5_DDPT_LUN1
odx SAME if="$SRC_SG" of="$SRC_SG" bs=512 skip=$(rng 0 $BLOCKS) seek=$(rng 131072 $BLOCKS) || fail "ddpt --odx within LUN0"
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
    odx "WHOLE_$k" if="$SRC_SG" of="$DST_SG" bs=512 skip=$(rng 0 "$CAP") seek=$(rng 0 "$CAP"); rc=$?
    sleep 2; echo "@@LO_END $k"
    [ $rc = 0 ] || fail "ddpt --odx whole LUN 0 -> LUN 1 (run $k)"
    k=$((k + 1))
done
echo "@@DONE"

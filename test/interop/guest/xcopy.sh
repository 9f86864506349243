# Command list for the linux-initiator VM (busybox sh): EXTENDED COPY from the kernel
# initiator's side with sg_xcopy and ddpt --xcopy, LUN 0 -> LUN 1 and within LUN 0 at
# another offset; each destination is read back with O_DIRECT and its md5 printed.
# Variables (run.sh -E): DATA_FILE DATA_MIB (32)
# ddpt 0.97 repeats the first LBAs in every EXTENDED COPY when it splits a transfer, so it
# is called once per chunk of at most 32768 blocks (issue 4, "Beware a client bug").
fail() { echo "@@FAIL $*"; exit 1; }
SRC_SG=$(sg_of 0); DST_SG=$(sg_of 1); SRC_SD=$(sd_of 0); DST_SD=$(sd_of 1)
[ -n "$SRC_SG" ] && [ -n "$DST_SG" ] && [ -n "$SRC_SD" ] && [ -n "$DST_SD" ] || fail "LUN 0/1 nodes missing"
BLOCKS=$((DATA_MIB * 2048))           # 512-byte blocks
CHUNK=32768
echo "@@MD5_FILE $(md5sum "$DATA_FILE" | cut -d' ' -f1)"
run dd if="$DATA_FILE" of="$SRC_SD" bs=1M count="$DATA_MIB" oflag=direct || fail "O_DIRECT write of the source"

readback() { # DEV MIB_OFFSET MARKER
    dd if="$1" of=/tmp/rb bs=1M skip="$2" count="$DATA_MIB" iflag=direct 2>/dev/null || fail "read back $1 @ $2 MiB"
    echo "@@$3 $(md5sum /tmp/rb | cut -d' ' -f1)"
}

# sg_xcopy: LUN 0 -> LUN 1 at 0, and LUN 0 -> LUN 0 at 64 MiB
run sg_xcopy verbose=1 if="$SRC_SG" of="$DST_SG" bs=512 count="$BLOCKS" || fail "sg_xcopy LUN0->LUN1"
readback "$DST_SD" 0 MD5_SG_XCOPY_LUN1
run sg_xcopy verbose=1 if="$SRC_SG" of="$SRC_SG" bs=512 skip=0 seek=131072 count="$BLOCKS" || fail "sg_xcopy within LUN0"
readback "$SRC_SD" 64 MD5_SG_XCOPY_SAME

# ddpt --xcopy, once per <= 32768-block chunk: LUN 0 -> LUN 1 at 96 MiB, LUN 0 -> LUN 0 at 128 MiB
ddpt_chunks() { # IF OF SEEK_BLOCKS
    done_=0
    while [ $done_ -lt $BLOCKS ]; do
        n=$CHUNK; [ $((BLOCKS - done_)) -lt $n ] && n=$((BLOCKS - done_))
        run ddpt if="$1" of="$2" bs=512 skip=$done_ seek=$(($3 + done_)) count=$n --xcopy verbose=1 || return 1
        done_=$((done_ + n))
    done
}
ddpt_chunks "$SRC_SG" "$DST_SG" 196608 || fail "ddpt --xcopy LUN0->LUN1"
readback "$DST_SD" 96 MD5_DDPT_LUN1
ddpt_chunks "$SRC_SG" "$SRC_SG" 262144 || fail "ddpt --xcopy within LUN0"
readback "$SRC_SD" 128 MD5_DDPT_SAME
run sg_copy_results --params "$SRC_SG"
echo "@@DONE"

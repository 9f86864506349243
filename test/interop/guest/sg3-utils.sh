# Command list for the linux-initiator VM (busybox sh, sourced after the VM's init has
# discovered the target and logged in): the sg3_utils checks of issue 3 against one LUN.
# Every check prints "@@OK name" or "@@FAIL name: why" and the list goes on; @@DONE at the end.
# The host then looks for holes in the backing file where the guest deallocated.
# Variables (run.sh -E): DATA_LUN
# LBAs (512-byte blocks) written, then deallocated three ways: UNMAP_LBA, WS16_LBA, WS10_LBA
# (2048 blocks each); CAW_LBA for COMPARE AND WRITE.
FAILED=0
ok() { echo "@@OK $1"; }
bad() { echo "@@FAIL $1: $2"; FAILED=1; }
SG=$(sg_of "$DATA_LUN")
SD=$(sd_of "$DATA_LUN")
[ -n "$SG" ] && [ -n "$SD" ] || { echo "@@FAIL setup: no sg/sd node for LUN $DATA_LUN"; exit 1; }
N=2048
UNMAP_LBA=16384
WS16_LBA=20480
WS10_LBA=24576
CAW_LBA=40000

# -- identification ---------------------------------------------------------------------
run sg_inq "$SG" && ok sg_inq || bad sg_inq "rc=$?"

# every page that page 00h lists (raw page: 4-byte header, then one page code per byte)
PAGES=$(sg_vpd -p 0 -r "$SG" | od -An -v -tx1 | tr -s ' \n' '\n\n' | grep . | tail -n +5)
[ -n "$PAGES" ] || bad sg_vpd_00 "no pages listed"
for p in $PAGES; do
    run sg_vpd -p "0x$p" "$SG" > /tmp/vpd.out 2>&1; rc=$?
    cat /tmp/vpd.out
    if [ $rc -eq 0 ]; then ok "sg_vpd_0x$p"; else bad "sg_vpd_0x$p" "rc=$rc"; fi
done
echo "@@VPD_PAGES $(echo $PAGES)"

run sg_readcap -l "$SG" > /tmp/rc.out 2>&1; rc=$?
cat /tmp/rc.out
if [ $rc -eq 0 ] && grep -q 'lbpme=1' /tmp/rc.out; then ok sg_readcap; else bad sg_readcap "rc=$rc, lbpme=1 missing"; fi

run sg_opcodes "$SG" > /tmp/op.out 2>&1; rc=$?
cat /tmp/op.out
if [ $rc -eq 0 ] && grep -qi 'persistent reserve in' /tmp/op.out && grep -qi 'compare and write' /tmp/op.out; then ok sg_opcodes; else bad sg_opcodes "rc=$rc"; fi

run sg_rtpg -d "$SG" > /tmp/rtpg.out 2>&1; rc=$?
cat /tmp/rtpg.out
if [ $rc -eq 0 ] && grep -qi 'active/optimized' /tmp/rtpg.out; then ok sg_rtpg; else bad sg_rtpg "rc=$rc"; fi

# -- persistent reservations: register, reserve, read, release ---------------------------
KEY=0x1234abcd
run sg_persist --out --register --param-sark=$KEY "$SG" && ok pr_register || bad pr_register "rc=$?"
run sg_persist --out --reserve --param-rk=$KEY --prout-type=1 "$SG" && ok pr_reserve || bad pr_reserve "rc=$?"
run sg_persist --in --read-keys "$SG" > /tmp/pr.out 2>&1; rc=$?
cat /tmp/pr.out
if [ $rc -eq 0 ] && grep -qi "$KEY" /tmp/pr.out; then ok pr_read_keys; else bad pr_read_keys "rc=$rc, key missing"; fi
run sg_persist --in --read-reservation "$SG" > /tmp/pr.out 2>&1; rc=$?
cat /tmp/pr.out
if [ $rc -eq 0 ] && grep -qi "key=$KEY" /tmp/pr.out && grep -qi 'write exclusive' /tmp/pr.out; then ok pr_read_reservation; else bad pr_read_reservation "rc=$rc"; fi
run sg_persist --in --read-full-status "$SG" && ok pr_read_full_status || bad pr_read_full_status "rc=$?"
run sg_persist --in --report-capabilities "$SG" && ok pr_report_capabilities || bad pr_report_capabilities "rc=$?"
# I/O still works for the holder
run dd if=/dev/zero of="$SD" bs=512 count=8 seek=$CAW_LBA oflag=direct && ok pr_holder_write || bad pr_holder_write "rc=$?"
run sg_persist --out --release --param-rk=$KEY --prout-type=1 "$SG" && ok pr_release || bad pr_release "rc=$?"
run sg_persist --in --read-reservation "$SG" > /tmp/pr.out 2>&1; rc=$?
cat /tmp/pr.out
if [ $rc -eq 0 ] && grep -qi 'no reservation' /tmp/pr.out; then ok pr_released; else bad pr_released "rc=$rc"; fi
run sg_persist --out --register --param-rk=$KEY --param-sark=0 "$SG" && ok pr_unregister || bad pr_unregister "rc=$?"

# -- thin provisioning: write, deallocate three ways, GET LBA STATUS ---------------------
run dd if=/dev/urandom of="$SD" bs=512 count=$((3 * 4096)) seek=$UNMAP_LBA oflag=direct || bad write_data "rc=$?"
# status of the first descriptor at LBA: "0x<lba> 0x<blocks> p_status add_status" (--brief,
# after its "Completion condition" and "RTP" lines)
lba_status() { sg_get_lba_status --brief --lba="$1" "$SG" | grep '^0x' | head -n 1 | awk '{print $3}'; }
st=$(lba_status $UNMAP_LBA); echo "status before: $st"
[ "$st" = "0" ] && ok mapped_before || bad mapped_before "p_status=$st"
run sg_unmap --lba=$UNMAP_LBA --num=$N "$SG" && ok sg_unmap || bad sg_unmap "rc=$?"
run sg_write_same --16 --unmap --lba=$WS16_LBA --num=$N "$SG" && ok sg_write_same_16 || bad sg_write_same_16 "rc=$?"
run sg_write_same --10 --unmap --lba=$WS10_LBA --num=$N "$SG" && ok sg_write_same_10 || bad sg_write_same_10 "rc=$?"
for l in $UNMAP_LBA $WS16_LBA $WS10_LBA; do
    run sg_get_lba_status --lba=$l "$SG"
    sg_get_lba_status --brief --lba=$l "$SG"
    st=$(lba_status $l)
    [ "$st" = "1" ] && ok "deallocated_$l" || bad "deallocated_$l" "p_status=$st"
    m=$((l + N))
    st=$(lba_status $m)
    [ "$st" = "0" ] && ok "mapped_after_$m" || bad "mapped_after_$m" "p_status=$st"
done
# deallocated blocks read back as zeros (LBPRZ=1)
z=$(dd if="$SD" bs=512 skip=$UNMAP_LBA count=$N iflag=direct 2>/dev/null | od -An -v -tx1 | tr -d ' 0\n' | wc -c)
[ "$z" = "0" ] && ok zeros_after_unmap || bad zeros_after_unmap "non-zero bytes"

# -- COMPARE AND WRITE --------------------------------------------------------------------
dd if=/dev/zero bs=512 count=1 2>/dev/null | tr '\000' 'A' > /tmp/a.blk
dd if=/dev/zero bs=512 count=1 2>/dev/null | tr '\000' 'B' > /tmp/b.blk
cat /tmp/a.blk /tmp/b.blk > /tmp/ab.bin
run dd if=/tmp/a.blk of="$SD" bs=512 count=1 seek=$CAW_LBA oflag=direct
run sg_compare_and_write --in=/tmp/ab.bin --lba=$CAW_LBA --num=1 "$SG" && ok caw_match || bad caw_match "rc=$?"
# the block now holds B: comparing with A must miscompare (sg3_utils exit status 14)
expect_rc 14 sg_compare_and_write --in=/tmp/ab.bin --lba=$CAW_LBA --num=1 "$SG" && ok caw_miscompare || bad caw_miscompare "not MISCOMPARE"
got=$(dd if="$SD" bs=512 skip=$CAW_LBA count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
[ "$got" = "$(md5sum < /tmp/b.blk | cut -d' ' -f1)" ] && ok caw_written_once || bad caw_written_once "block is not B"

echo "@@DEALLOCATED $UNMAP_LBA $WS16_LBA $WS10_LBA $N"
echo "@@DONE"
exit $FAILED

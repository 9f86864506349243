# Sourced by command lists that drive ddpt --odx / ddptctl (busybox sh): how this client
# encodes block device range descriptors. ddpt 0.97 (the VM's) writes them one byte early
# (ddpt src/ddpt_xcopy.c do_pop_tok()/do_wut(); guest/odx.sh explains it and the limits of
# this workaround), so a target reads LBA<<8 and NUM<<8. The probe asks for a POPULATE TOKEN of 1 block and reads the transfer count back.
#   ddpt_odx_probe SRC_SG DST_SG   sets SHIFT (1 or 256), prints "@@SHIFT n"; deletes the token
#   rng LBA NUM                    "LBA,NUM" in the client's units (multiples of 256 blocks)
# Needs fail() from the caller.
ddpt_odx_probe() {
    run ddptctl --pt=0,1 --rtf=/tmp/probe.tok "$1" >/tmp/probe.out 2>&1
    cat /tmp/probe.out
    tc=$(sed -n 's/^PT completes with a transfer count of \([0-9]*\).*/\1/p' /tmp/probe.out)
    case "$tc" in
        1) SHIFT=1 ;;
        256) SHIFT=256 ;;
        *) fail "probe: ddptctl --pt=0,1 gave transfer count '$tc'" ;;
    esac
    echo "@@SHIFT $SHIFT"
    run ddptctl --wut=0,0 --del_tkn --rtf=/tmp/probe.tok "$2" || fail "probe: WUT with DEL_TKN"
}

rng() {
    [ "$SHIFT" = 1 ] && { echo "$1,$2"; return; }
    [ $(($1 % 256)) = 0 ] && [ $(($2 % 256)) = 0 ] || fail "rng $1 $2: not a multiple of 256 blocks"
    echo "$(($1 / 256)),$(($2 / 256))"
}

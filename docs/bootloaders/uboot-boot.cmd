# suitcase: A/B slot selection with bounded trial boots, for U-Boot.
#
# Source of a U-Boot boot script; compile it with
#   mkimage -A arm64 -O linux -T script -C none -n "suitcase A/B" -d uboot-boot.cmd boot.scr
# and let U-Boot's bootcmd `source` it. Needs CONFIG_HUSH_PARSER, CONFIG_CMD_SETEXPR and a
# writable environment (CONFIG_ENV_IS_IN_MMC / _SPI_FLASH / _FAT / ...), the same one the
# device's fw_env.config describes. The variable contract is in docs/bootloaders.md:
#
#   BOOT_ORDER    "A B" or "B A"  the slots to try, first one first
#   BOOT_A_LEFT   0..9            boot attempts slot A has left
#   BOOT_B_LEFT   0..9            boot attempts slot B has left
#
# The suitcase agent writes them with fw_setenv (trial, confirm, revert); this script only
# counts down. Every boot it takes the first slot of BOOT_ORDER whose counter is above 0,
# decrements that counter and saves the environment *before* the kernel starts, then boots
# the slot with suitcase.slot=A|B on the kernel command line (the agent reads it back from
# /proc/cmdline). A slot that never comes up is thus tried BOOT_x_LEFT times, then the next
# slot of BOOT_ORDER boots: the fallback.
#
# Board-specific: define suitcase_boot_A and suitcase_boot_B in the default environment,
# each loading and booting one slot, e.g.
#   suitcase_boot_A=setenv bootargs ${bootargs} root=/dev/mmcblk0p2 rootwait; load mmc 0:2 ${kernel_addr_r} /boot/Image; booti ${kernel_addr_r} - ${fdt_addr}
#   suitcase_boot_B=setenv bootargs ${bootargs} root=/dev/mmcblk0p3 rootwait; load mmc 0:3 ${kernel_addr_r} /boot/Image; booti ${kernel_addr_r} - ${fdt_addr}

# First boot: the defaults (the same the agent assumes for an unset variable).
test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3

# Choose: the first slot in BOOT_ORDER with attempts left. U-Boot's hush splits the
# expanded list into words.
setenv suitcase_slot
for s in ${BOOT_ORDER}; do
    if test -z "${suitcase_slot}" && test "${s}" = "A" && test ${BOOT_A_LEFT} -gt 0; then
        # setexpr computes in hexadecimal: the same as decimal for the counts 1..9.
        setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
        setenv suitcase_slot A
    fi
    if test -z "${suitcase_slot}" && test "${s}" = "B" && test ${BOOT_B_LEFT} -gt 0; then
        setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
        setenv suitcase_slot B
    fi
done

# No slot has attempts left: give both their 3 attempts again and start over. This loops
# only when neither slot ever comes up; replace the reset with your recovery if you have one.
if test -z "${suitcase_slot}"; then
    echo "suitcase: no slot has boot attempts left; giving both slots 3 again"
    setenv BOOT_A_LEFT 3
    setenv BOOT_B_LEFT 3
    saveenv
    reset
fi

# The decremented counter is saved before the kernel starts: a slot that hangs, panics or
# is reset by a watchdog has used up this attempt. (suitcase_slot is saved too; the agent
# never reads it.)
echo "suitcase: booting slot ${suitcase_slot} (BOOT_ORDER=${BOOT_ORDER} BOOT_A_LEFT=${BOOT_A_LEFT} BOOT_B_LEFT=${BOOT_B_LEFT})"
saveenv
setenv bootargs "${bootargs} suitcase.slot=${suitcase_slot}"
run suitcase_boot_${suitcase_slot}

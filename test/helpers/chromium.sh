#!/bin/sh
# The browsers stand in for remote people. On this small shared machine, keep them on the last
# CPU so the server under test is not starved by them, as it would not be on its own host.
# (Chromium sets its own process priorities, so nice would not hold.) MCU_TEST_BROWSER_CPUS
# overrides the CPU list for a test that needs more browsers than one CPU decodes.
last=$(($(nproc) - 1))
exec taskset -c "${MCU_TEST_BROWSER_CPUS:-$last}" /usr/bin/chromium "$@"

#!/bin/sh
# The modchain image's entry point (packaging/Dockerfile). Runs any command;
# for `modchain start` it first creates the node key (`modchain init` keeps
# an existing one) and, when MODCHAIN_BOOTSTRAP_FILE names a file, waits for
# a bootstrap peer's address there and joins through it. The compose file
# shares the bootstrap peer's data volume for this: its peer id is only
# known once it has started.
set -eu

case "${1:-}" in
modchain-bootstrap)
    # An address left from an earlier run names an old IP; nodes must wait
    # for the new one.
    rm -f "${MODCHAIN_BOOTSTRAP_DATA_DIR:-/var/lib/modchain-bootstrap}/addr"
    ;;
modchain)
    if [ "${2:-}" = start ]; then
        modchain init >/dev/null
        if [ -n "${MODCHAIN_BOOTSTRAP_FILE:-}" ]; then
            waited=0
            until [ -s "$MODCHAIN_BOOTSTRAP_FILE" ]; do
                if [ "$waited" -ge 120 ]; then
                    echo "no bootstrap address in $MODCHAIN_BOOTSTRAP_FILE after 120s" >&2
                    exit 1
                fi
                sleep 1
                waited=$((waited + 1))
            done
            shift 2
            set -- modchain start --bootstrap "$(cat "$MODCHAIN_BOOTSTRAP_FILE")" "$@"
        fi
    fi
    ;;
esac
exec "$@"

#!/usr/bin/env bash
# Faults (issue 9): PostgreSQL stopped for minutes in the middle of a burst.
# The same test as ingest_pg_outage.sh (issue 4's 30 s), with the server down
# for 120 s while 1,200 of the 2,000 files arrive: by then the reconnect
# backoff has long reached its cap (10 s), files have been held the whole
# time, and every file still ends exactly once.
MAM_OUTAGE_S=120 exec bash "$(dirname "$0")/ingest_pg_outage.sh"

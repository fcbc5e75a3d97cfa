#!/usr/bin/env bash
# ingest_kill_move (issue 4, "Done when"): ingest_kill.sh with
# `after_ingest: move`: SIGKILL at random moments, including between the
# commit and the move and between the move and its confirmation. At the end the
# drop folder is empty, every asset's one original location is a file under
# move_to with the right checksum, move_to holds exactly one file per dropped
# file (no leftover copy), and nothing is catalogued twice.
export MAM_KILL_AFTER=move
export MAM_KILL_FILES=${MAM_KILL_FILES:-1000}
export MAM_KILL_ROUNDS=${MAM_KILL_ROUNDS:-20}
exec bash "$(dirname "$0")/ingest_kill.sh"

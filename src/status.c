/*
 * `mam-ingest status`: a human summary of the catalogue and the daemon.
 * Filled in by the operations work (issue 7); until then it says so.
 */
#include <stdio.h>

#include "app.h"

int status_main(const struct config *cfg)
{
	(void)cfg;
	fprintf(stderr, "mam-ingest: status: not implemented yet\n");
	return 3;
}

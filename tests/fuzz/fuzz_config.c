/*
 * libFuzzer target: the configuration loader (libyaml -> node tree ->
 * validation) on arbitrary bytes. The YAML is the one input an administrator
 * types by hand, and SIGHUP reloads it into a running daemon, so no input may
 * crash, leak or read out of bounds. Every error message must name the file
 * and a position ("fuzz.yaml:LINE:COL: ..."), which is checked too.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_errors errs = {0};
	struct config *cfg = NULL;
	size_t i, nwarn = 0;
	int rc;

	rc = config_load_buffer("fuzz.yaml", (const char *)data, size, &cfg, &errs);
	for (i = 0; i < errs.n; i++) {
		if (strncmp(errs.msgs[i], "fuzz.yaml:", 10) != 0)
			abort();
		nwarn += config_msg_is_warning("fuzz.yaml", errs.msgs[i]);
	}
	if (rc == 0 && (!cfg || nwarn != errs.n))
		abort(); /* success means a config and no message but warnings */
	if (rc == -EINVAL && nwarn == errs.n)
		abort(); /* a rejected config always says why */
	config_free(cfg);
	config_errors_free(&errs);
	return 0;
}

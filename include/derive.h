/*
 * derive: thumbnail and proxy jobs (see derive.c). Called by job.c once the
 * input was probed (job->probe set); each ends by recording the job's
 * outcome through job_store()/job_fail().
 */
#ifndef MAM_DERIVE_H
#define MAM_DERIVE_H

#include "job.h"

void derive_thumbnail(struct job *job);
void derive_proxy(struct job *job);

#endif

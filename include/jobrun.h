/*
 * jobrun: one child process (ffprobe, ffmpeg, mediainfo) on the libuv loop.
 *
 * The child is started with uv_spawn in its own session (so a timeout or a
 * stop kills its whole process group), with stdin closed and stdout/stderr
 * read through pipes: stdout is either collected whole (ffprobe's JSON) or
 * handed over line by line (ffmpeg's -progress output); stderr keeps its
 * first few KiB for the error message. A struct jobrun is embedded in the
 * job that runs it; done_cb runs once the process exited and every handle is
 * closed, so the owner may reuse or free the struct from inside it.
 */
#ifndef MAM_JOBRUN_H
#define MAM_JOBRUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define JOBRUN_ERR_MAX 4096		   /* stderr bytes kept */
#define JOBRUN_OUT_MAX (64u * 1024 * 1024) /* stdout bytes kept when collected */

struct jobrun;
typedef void (*jobrun_line_cb)(struct jobrun *r, const char *line, void *arg);
typedef void (*jobrun_done_cb)(struct jobrun *r, void *arg);

struct jobrun {
	uv_process_t proc;
	uv_pipe_t outpipe, errpipe;
	uv_timer_t timer; /* the timeout */
	int nopen;	  /* handles still to be closed */
	bool exited;	  /* exit_cb ran */
	bool timed_out;	  /* killed because the timeout expired */
	bool killed;	  /* killed by jobrun_kill */
	int spawn_error;  /* libuv error of uv_spawn, 0 when it ran */
	int64_t exit_status;
	int term_signal;
	char *out; /* collected stdout, NUL-terminated (collect mode) */
	size_t outlen, outcap;
	bool out_truncated;
	char line[1024]; /* partial stdout line (line mode) */
	size_t linelen;
	char err[JOBRUN_ERR_MAX]; /* first bytes of stderr, NUL-terminated */
	size_t errlen;
	jobrun_line_cb line_cb; /* NULL = collect stdout */
	jobrun_done_cb done_cb;
	void *arg;
};

/*
 * Start argv[0] (searched in PATH). Always returns 0 after setting things in
 * motion: a spawn failure is reported through done_cb with spawn_error set,
 * so the caller has one completion path. timeout_ms 0 = none.
 */
void jobrun_start(struct jobrun *r, uv_loop_t *loop, char *const argv[], uint64_t timeout_ms,
		  jobrun_line_cb line_cb, jobrun_done_cb done_cb, void *arg);
/* SIGKILL the child's process group (no-op once it exited). */
void jobrun_kill(struct jobrun *r);
/* true when the child ran and exited with status 0. */
bool jobrun_ok(const struct jobrun *r);
/*
 * A one-line description of why the run failed, for error_message: the
 * child's stderr (trimmed, newlines folded) or how it ended.
 */
void jobrun_describe(const struct jobrun *r, const char *what, char *buf, size_t bufsz);
/* Free the collected stdout (after done_cb). */
void jobrun_reset(struct jobrun *r);

/* Use `setpriv --pdeathsig KILL` so children die with a SIGKILLed worker. */
void jobrun_use_pdeathsig(bool on);

#endif

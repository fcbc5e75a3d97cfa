/*
 * Drop folders as a whole: choosing events or poll mode (statfs at start:
 * inotify cannot see the writes of other hosts on NFS, SMB, FUSE...),
 * starting and stopping a folder, and folders that go away. A folder whose
 * root vanishes (deleted, renamed away, unmounted, ESTALE) is paused and
 * reported once; its tracked files are kept, not reported as deleted, and
 * one timer per folder checks for it to come back, when it is rescanned and
 * reported resumed. A bind mount removed gives no inotify event at all, so
 * the roots are also stat'ed every few seconds (statx: STATX_ATTR_MOUNT_ROOT
 * tells an unmounted share from a replaced directory).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>

#include "log.h"
#include "util.h"
#include "watch_int.h"

#define PAUSE_CHECK_MS 1000

/* Filesystems whose remote writers inotify cannot see. */
static const struct {
	unsigned long magic;
	const char *name;
} remote_fs[] = {
	{0x6969, "nfs"},	{0x517B, "smb"},       {0xFF534D42, "cifs"},
	{0xFE534D42, "smb2"},	{0x65735546, "fuse"},  {0x01021997, "9p"},
	{0x00C36400, "ceph"},	{0x5346414F, "afs"},   {0x73757245, "coda"},
	{0x564c, "ncp"},	{0x7461636f, "ocfs2"}, {0x01161970, "gfs2"},
	{0x0BD00BD0, "lustre"}, {0x47504653, "gpfs"},  {0x13661366, "orangefs"},
};

/* The quarantine and move_to directories may lie inside the drop folder:
 * what mam-ingest puts there must never come back as new drops. */
bool watch_dir_excluded(const struct folder_cfg *fc, const char *abspath)
{
	size_t plen = strlen(fc->path);

	if (fc->quarantine_to ? strcmp(fc->quarantine_to, abspath) == 0
			      : strncmp(abspath, fc->path, plen) == 0 && abspath[plen] == '/' &&
					strcmp(abspath + plen + 1, ".quarantine") == 0)
		return true;
	return fc->move_to && strcmp(fc->move_to, abspath) == 0;
}

void watch_folder_timer(struct wfolder *f, uv_timer_cb cb, uint64_t ms)
{
	if (f->w->closing)
		return;
	if (!f->timer_init) {
		uv_timer_init(f->w->loop, &f->timer);
		f->timer_init = true;
	}
	uv_timer_start(&f->timer, cb, ms, 0);
}

/* --- folders -------------------------------------------------------------- */

static const char *fs_name(const struct wfolder *f, bool *remote)
{
	struct statfs sfs;
	size_t i;

	*remote = false;
	if (statfs(f->cfg->path, &sfs) < 0)
		return NULL;
	for (i = 0; i < ARRAY_SIZE(remote_fs); i++) {
		if ((unsigned long)sfs.f_type == remote_fs[i].magic) {
			*remote = true;
			return remote_fs[i].name;
		}
	}
	return "local";
}

void watch_folder_begin(struct wfolder *f)
{
	struct watcher *w = f->w;
	char esc[LOG_ESC_MAX];
	const char *fs;
	bool remote;
	int err;

	if (w->opts.oneshot) {
		watch_scan_request(f, NULL);
		return;
	}
	fs = fs_name(f, &remote);
	if (!fs) {
		err = errno;
		watch_folder_pause(f, PAUSE_GONE, strerror(err));
		return;
	}
	if (f->cfg->mode == WATCH_AUTO)
		f->mode = remote ? WATCH_POLL : WATCH_EVENTS;
	else
		f->mode = (uint8_t)f->cfg->mode;
	log_info("watcher", "watching drop folder \"%s\" of tenant %s: %s filesystem, %s mode",
		 watch_esc(f->cfg->path, esc), f->cfg->tenant->code, fs,
		 f->mode == WATCH_POLL ? "poll" : "events");
	watch_scan_request(f, NULL);
}

void watch_folder_stop(struct wfolder *f)
{
	size_t i;

	if (f->timer_init)
		uv_timer_stop(&f->timer);
	watch_wdir_drop(f->w, f->idx, NULL, true);
	for (i = 0; i < f->n_pending; i++)
		free(f->pending[i]);
	free(f->pending);
	f->pending = NULL;
	f->n_pending = 0;
	f->want_full = f->again = f->paused = f->resume_pending = false;
}

static void pause_check(uv_timer_t *t)
{
	struct wfolder *f = container_of(t, struct wfolder, timer);
	char esc[LOG_ESC_MAX];
	struct stat st;

	if (stat(f->cfg->path, &st) == 0 && S_ISDIR(st.st_mode) &&
	    ((uint64_t)st.st_dev != f->avoid_dev || (uint64_t)st.st_ino != f->avoid_ino)) {
		log_info("watcher", "drop folder \"%s\" of tenant %s is back: rescanning it",
			 watch_esc(f->cfg->path, esc), f->cfg->tenant->code);
		f->resume_pending = true;
		watch_folder_begin(f);
		return;
	}
	watch_folder_timer(f, pause_check, PAUSE_CHECK_MS);
}

/*
 * The folder's root is not the directory we scanned last (st_dev or inode
 * changed). If it was a mount point and the path is now a plain directory,
 * the share was unmounted (a bind mount removed gives no inotify event):
 * pause until something is mounted again. Otherwise it was replaced or
 * remounted: report a pause and a resume around a full rescan, never a
 * mass deletion.
 */
void watch_root_changed(struct wfolder *f, bool mount_root)
{
	struct watcher *w = f->w;
	char esc[LOG_ESC_MAX];

	if (f->mount_root && !mount_root) {
		watch_folder_pause(f, PAUSE_UNMOUNT, "unmounted");
		return;
	}
	log_warnx("watcher",
		  "drop folder \"%s\" of tenant %s was replaced or remounted: "
		  "rescanning it",
		  watch_esc(f->cfg->path, esc), f->cfg->tenant->code);
	watch_wdir_drop(w, f->idx, NULL, true);
	watch_emit(w, WATCHER_FOLDER_PAUSED, f, NULL, NULL, NULL);
	f->resume_pending = true;
	watch_scan_request(f, NULL);
}

/* Every few seconds: is each folder's root still the directory we watch? */
void watch_roots_check(struct watcher *w)
{
	struct statx stx;
	size_t i;

	for (i = 0; i < w->n_folders; i++) {
		struct wfolder *f = &w->folders[i];
		uint64_t dev, ino;

		if (!f->active || f->paused || !f->scanned || f->resume_pending)
			continue;
		if (statx(AT_FDCWD, f->cfg->path, 0, STATX_BASIC_STATS, &stx) < 0) {
			int err = errno;

			/* ENOENT, ESTALE, ENOTCONN, EIO...: the folder is not there */
			watch_folder_pause(f, PAUSE_GONE, strerror(err));
			continue;
		}
		dev = (uint64_t)makedev(stx.stx_dev_major, stx.stx_dev_minor);
		ino = stx.stx_ino;
		if (dev != f->dev || ino != f->ino)
			watch_root_changed(f, (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0);
	}
}

void watch_folder_pause(struct wfolder *f, enum pause_kind kind, const char *why)
{
	struct watcher *w = f->w;
	char esc[LOG_ESC_MAX];
	struct stat st;

	if (f->paused) {
		/* A resume attempt failed: keep waiting, report nothing new. */
		f->resume_pending = false;
		watch_folder_timer(f, pause_check, PAUSE_CHECK_MS);
		return;
	}
	watch_folder_stop(f);
	f->paused = true;
	/* After an unmount the path still names a directory, the empty mount
	 * point: that one must not count as "back". Otherwise any directory at
	 * the path is the folder back (renamed back, recreated). */
	f->avoid_dev = f->avoid_ino = 0;
	if (kind == PAUSE_UNMOUNT && stat(f->cfg->path, &st) == 0) {
		f->avoid_dev = (uint64_t)st.st_dev;
		f->avoid_ino = (uint64_t)st.st_ino;
	}
	log_warnx("watcher",
		  "drop folder \"%s\" of tenant %s is unavailable (%s): paused; its "
		  "files are kept and it is rescanned when it is back",
		  watch_esc(f->cfg->path, esc), f->cfg->tenant->code, why);
	watch_emit(w, WATCHER_FOLDER_PAUSED, f, NULL, NULL, NULL);
	watch_folder_timer(f, pause_check, PAUSE_CHECK_MS);
}

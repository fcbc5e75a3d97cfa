/*
 * mam-ingest: one binary, several subcommands. main() only parses the command
 * line, resolves and loads the configuration, and hands over to the module
 * that implements the subcommand (see app.h). Every subcommand has --help.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "config.h"
#include "heap.h"
#include "log.h"

struct subcmd {
	const char *name;
	const char *summary;
	const char *usage; /* extra options, one per line */
};

static const struct subcmd subcmds[] = {
	{"run", "watch every drop folder and ingest finished files (foreground daemon)",
	 "  --no-db            watch only: print one \"finished\" line per finished file\n"
	 "  --log-format FMT   text (default) or json\n"},
	{"scan", "one pass over every drop folder: ingest what is finished, then exit",
	 "  --dry-run          list finished and settling files; do not touch the database\n"},
	{"worker", "run queued ingest jobs (metadata, thumbnails, proxies)",
	 "  --log-format FMT   text (default) or json\n"},
	{"migrate", "apply pending database migrations",
	 "  --sql-dir DIR      migrations directory (default: found automatically)\n"
	 "  -v, --verbose      print each migration applied\n"},
	{"check-config", "validate the configuration file and print the result", ""},
	{"status", "print a summary of the catalogue, queues and folders", ""},
};

static void usage_main(FILE *out)
{
	size_t i;

	fprintf(out,
		"usage: mam-ingest [-c FILE] COMMAND [OPTIONS]\n\n"
		"Watch-folder ingester for a media asset management catalogue in PostgreSQL.\n\n"
		"commands:\n");
	for (i = 0; i < sizeof subcmds / sizeof subcmds[0]; i++)
		fprintf(out, "  %-14s %s\n", subcmds[i].name, subcmds[i].summary);
	fprintf(out, "\noptions:\n"
		     "  -c, --config FILE  configuration file (default: $MAM_INGEST_CONFIG, else\n"
		     "                     " CONFIG_DEFAULT_PATH ")\n"
		     "  -h, --help         this help; COMMAND --help for a command's options\n"
		     "  -V, --version      print the version\n");
}

static void usage_sub(const struct subcmd *sc, FILE *out)
{
	fprintf(out,
		"usage: mam-ingest %s [-c FILE] [OPTIONS]\n\n%s.\n\noptions:\n"
		"  -c, --config FILE  configuration file\n%s"
		"  -h, --help         this help\n",
		sc->name, sc->summary, sc->usage);
}

static int load_config(const char *path, struct config **cfg)
{
	struct config_errors errs = {0};
	size_t i;
	int rc = config_load(path, cfg, &errs);

	for (i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msgs[i]);
	config_errors_free(&errs);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{"dry-run", no_argument, NULL, 'n'},
		{"no-db", no_argument, NULL, 'N'},
		{"sql-dir", required_argument, NULL, 'S'},
		{"verbose", no_argument, NULL, 'v'},
		{"log-format", required_argument, NULL, 'L'},
		{NULL, 0, NULL, 0},
	};
	const struct subcmd *sc = NULL;
	const char *cfgarg = NULL, *sqldir = NULL, *logfmt = NULL, *path;
	struct ingest_opts iopts = {0};
	struct config *cfg = NULL;
	bool verbose = false, help = false;
	int c, rc, i;

	log_init("mam-ingest");
	/*
	 * One malloc arena for every thread. glibc gives each threadpool thread
	 * its own arena, and what a directory scan allocated there and freed
	 * stays resident in it: about 300 KiB per thread, 1.2 MiB of a daemon
	 * holding 100,000 files (the memory benchmark). The threads allocate
	 * little (buffers for big files are mapped), and glibc's per-thread
	 * cache serves small blocks without the arena lock. MALLOC_ARENA_MAX
	 * in the environment still overrides it.
	 */
	heap_one_arena();
	/* Options may come before or after the command: find the command first. */
	for (i = 1; i < argc; i++) {
		size_t k;

		if (argv[i][0] == '-') {
			if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0 ||
			    strcmp(argv[i], "--sql-dir") == 0 ||
			    strcmp(argv[i], "--log-format") == 0)
				i++;
			continue;
		}
		for (k = 0; k < sizeof subcmds / sizeof subcmds[0]; k++)
			if (strcmp(argv[i], subcmds[k].name) == 0)
				sc = &subcmds[k];
		if (!sc) {
			fprintf(stderr, "mam-ingest: unknown command \"%s\"\n\n", argv[i]);
			usage_main(stderr);
			return 2;
		}
		memmove(&argv[i], &argv[i + 1], (size_t)(argc - i) * sizeof argv[0]);
		argc--;
		break;
	}
	while ((c = getopt_long(argc, argv, "c:hVnv", opts, NULL)) != -1) {
		switch (c) {
		case 'c': cfgarg = optarg; break;
		case 'h': help = true; break;
		case 'V': printf("mam-ingest %s\n", MAM_VERSION); return 0;
		case 'n': iopts.dry_run = true; break;
		case 'N': iopts.no_db = true; break;
		case 'S': sqldir = optarg; break;
		case 'v': verbose = true; break;
		case 'L': logfmt = optarg; break;
		default:
			if (sc)
				usage_sub(sc, stderr);
			else
				usage_main(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mam-ingest: unexpected argument \"%s\"\n", argv[optind]);
		return 2;
	}
	if (help || !sc) {
		if (sc)
			usage_sub(sc, stdout);
		else
			usage_main(help ? stdout : stderr);
		return help ? 0 : 2;
	}
	path = config_path_resolve(cfgarg);
	rc = load_config(path, &cfg);
	if (strcmp(sc->name, "check-config") == 0) {
		if (rc == 0)
			printf("configuration OK\n");
		config_free(cfg);
		return rc == 0 ? 0 : 1;
	}
	if (rc != 0)
		return 1;
	if (logfmt)
		log_set_json(strcmp(logfmt, "json") == 0);
	else if (cfg->log_format)
		log_set_json(strcmp(cfg->log_format, "json") == 0);

	iopts.config_path = path;
	if (strcmp(sc->name, "run") == 0) {
		rc = ingest_main(cfg, &iopts);
	} else if (strcmp(sc->name, "scan") == 0) {
		iopts.oneshot = true;
		rc = ingest_main(cfg, &iopts);
	} else if (strcmp(sc->name, "worker") == 0) {
		rc = worker_main(cfg, path);
	} else if (strcmp(sc->name, "migrate") == 0) {
		rc = migrate_main(cfg, sqldir, verbose);
	} else {
		rc = status_main(cfg);
	}
	config_free(cfg);
	return rc;
}

/* config.h - one struct config built from defaults, then the INI file (-c), then command
 * line flags. Errors name the flag or key, the value and what would be accepted. */
#ifndef SMTPTAP_CONFIG_H
#define SMTPTAP_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "smtptap/buf.h"
#include "smtptap/capture.h"
#include "smtptap/client_cert.h"
#include "smtptap/fault.h"
#include "smtptap/parse.h"
#include "smtptap/watch.h"

enum {
    CONFIG_MAX_LISTEN = 16,
    CONFIG_FILE_MAX = 1 << 20, /* bytes of an INI file: a larger one is not a configuration */
};

/* sysexits codes used by smtptap */
enum { EXIT_USAGE = 64, EXIT_CONFIG = 78 };

enum color_mode { COLOR_AUTO, COLOR_ALWAYS, COLOR_NEVER };
enum client_starttls { CLIENT_STARTTLS_OFFER, CLIENT_STARTTLS_STRIP, CLIENT_STARTTLS_PASSTHROUGH };

struct config {
    struct listen_spec listen[CONFIG_MAX_LISTEN];
    unsigned nlisten;
    struct upstream_spec upstream;
    enum client_starttls client_starttls;
    uint64_t max_sessions;
    uint64_t idle_timeout_ms;
    uint64_t connect_timeout_ms;
    uint64_t grace_ms; /* shutdown: how long sessions may finish */
    char capture_dir[4096];
    unsigned formats;            /* FORMAT_* bits (capture.h) */
    bool eml_raw;                /* --eml-raw */
    char ca_dir[4096];           /* smtptap's CA; empty: tls_default_ca_dir() */
    char keylog[4096];           /* NSS key log file; empty: none */
    char upstream_ca[4096];      /* extra CA file trusted for the upstream; empty: none */
    bool insecure;               /* do not verify the upstream certificate */
    bool decode_auth;            /* show decoded SASL exchanges as "##" lines */
    bool redact;                 /* mask passwords, tokens and the raw lines carrying them */
    char sink_users[4096];       /* "alice:secret, bob:pw"; empty: the sink accepts anyone */
    struct fault_set faults;     /* in force: --fault rules first, then [fault NAME] sections */
    struct fault_set cli_faults; /* --fault rules alone, kept for reloads */
    struct fault_set file_faults;
    uint64_t seed;
    bool seed_given;
    bool quiet;    /* -q: no live transcript (captures are not affected) */
    int verbosity; /* -v count: 1 whole messages on the terminal, 2 also state changes */
    enum color_mode color;
    bool summary;              /* --summary: one line per finished session on the terminal */
    struct watch_filter watch; /* --only, --session: the sessions the terminal shows */
    char config_file[4096];
    /* argv as a shell would take it back, for the header of the transcript and of text
     * captures. No flag carries a secret ([sink] users is a config-file key; the header
     * names that file, it does not copy it). */
    char command_line[8192];

    enum client_cert client_cert; /* --client-cert: the leaf the client is shown */
    double replay_speed;          /* -u replay: 0 no waits, 1 the recorded pace, N faster */
    bool replay_strict;           /* -u replay: commands must be the recorded ones exactly */

    /* The control API and web page (--control, [control]): off when !control_on. */
    bool control_on;
    struct hostport control; /* numeric address and port */
    char control_token[256]; /* "": no token (loopback only); from --control-token(-file) */
    char control_token_file[4096];
    uint64_t control_recent; /* ended sessions kept for the API (a ring) */
};

enum config_result {
    CONFIG_OK = 0,
    CONFIG_HELP = 1,     /* print usage, exit 0 */
    CONFIG_VERSION = 2,  /* print version, exit 0 */
    CONFIG_PRINT_CA = 3, /* print the CA certificate (create it if missing), exit 0 */
    CONFIG_ERR_USAGE = EXIT_USAGE,
    CONFIG_ERR_CONFIG = EXIT_CONFIG,
};

void config_defaults(struct config *c);
/* Builds *c from argv. On error returns CONFIG_ERR_* with a message in *err. */
enum config_result config_from_args(struct config *c, int argc, char **argv, struct buf *err);
/* Loads only the INI file into *c (used by config_from_args). */
enum config_result config_load_file(struct config *c, const char *path, struct buf *err);
const char *config_usage(void);
/* SIGHUP: builds a new rule set from the --fault rules and the config file as it is now.
 * On error the message is in *err and *out is left empty. */
/* The control token's file, read once the configuration is complete (its path may come from
 * either source). Returns CONFIG_OK, or an error naming the flag or key and the file. */
enum config_result config_read_control_token(struct config *c, struct buf *err);
enum config_result config_reload_faults(const struct config *c, struct fault_set *out,
                                        struct buf *err);
/* Frees what the configuration owns. */
void config_free(struct config *c);

#endif

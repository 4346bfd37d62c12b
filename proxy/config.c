/* config.c - defaults, the INI file (inih) and the command line (getopt_long) into one
 * struct config. A key given on the command line wins over the file. */
#include "smtptap/config.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char usage[] =
    "Usage: smtptap [OPTIONS]\n"
    "A transparent SMTP debugging proxy: shows and records the whole SMTP dialog.\n"
    "\n"
    "  -l, --listen [tls:]ADDR:PORT   listen address, repeatable (default 127.0.0.1:2525)\n"
    "  -u, --upstream SPEC            [plain:]HOST:PORT | sink | transparent (default sink)\n"
    "  -c, --config FILE              INI file; command line flags override it\n"
    "  -d, --capture-dir DIR          write one transcript file per session into DIR\n"
    "      --format LIST              capture formats: text (default: text)\n"
    "      --client-starttls MODE     passthrough (offer and strip: not supported yet)\n"
    "      --max-sessions N           concurrent sessions (default 1000)\n"
    "      --idle-timeout DURATION    close a session silent this long (default 300s)\n"
    "      --connect-timeout DURATION upstream connect and greeting timeout (default 10s)\n"
    "  -q, --quiet                    no live transcript on stderr\n"
    "  -v, --verbose                  show whole messages, not only their first lines\n"
    "      --color=auto|always|never  colour the live transcript (NO_COLOR honoured)\n"
    "  -V, --version                  print the version and exit\n"
    "  -h, --help                     print this help and exit\n"
    "\n"
    "Not supported yet (accepted by name, refused with a message): --decode-auth, --redact,\n"
    "--fault, --seed, --insecure, --upstream-ca, --ca-dir, --print-ca, --keylog.\n"
    "\n"
    "Exit status: 0 clean shutdown, 64 usage error, 78 configuration error.\n";

const char *config_usage(void)
{
    return usage;
}

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof *c);
    parse_listen("127.0.0.1:2525", &c->listen[0]);
    c->nlisten = 1;
    c->upstream.kind = UPSTREAM_SINK;
    c->client_starttls = CLIENT_STARTTLS_PASSTHROUGH;
    c->max_sessions = 1000;
    c->idle_timeout_ms = 300000;
    c->connect_timeout_ms = 10000;
    c->grace_ms = 5000;
    c->formats = FORMAT_TEXT;
    c->color = COLOR_AUTO;
}

/* ---- one setting, whatever its source ------------------------------------------------- */

enum setting_id {
    S_LISTEN,
    S_UPSTREAM,
    S_CAPTURE_DIR,
    S_FORMAT,
    S_CLIENT_STARTTLS,
    S_MAX_SESSIONS,
    S_IDLE_TIMEOUT,
    S_CONNECT_TIMEOUT,
    S_COLOR,
    S_LATER,
    S_LATER_BOOL,
    S_LATER_EMPTY,
};

/* Applies one value. `name` is how the user wrote it (flag or section.key) for messages. */
static const char *apply(struct config *c, enum setting_id id, const char *name, const char *v,
                         bool *listen_reset, struct buf *err)
{
    const char *bad = NULL;
    uint64_t n;
    bool b;
    switch (id) {
    case S_LISTEN:
        if (listen_reset && !*listen_reset) c->nlisten = 0, *listen_reset = true;
        if (c->nlisten == CONFIG_MAX_LISTEN) {
            bad = "at most 16 listen addresses";
            break;
        }
        if (!(bad = parse_listen(v, &c->listen[c->nlisten]))) {
            if (c->listen[c->nlisten].implicit_tls)
                bad = "ADDR:PORT without tls: (implicit TLS listeners are not supported yet)";
            else
                c->nlisten++;
        }
        break;
    case S_UPSTREAM:
        if (!(bad = parse_upstream(v, &c->upstream)) && c->upstream.kind == UPSTREAM_FIXED &&
            (c->upstream.tls == TLS_IMPLICIT || c->upstream.tls == TLS_STARTTLS))
            bad = "sink, transparent or [plain:]HOST:PORT (tls: and starttls: upstreams, and "
                  "port 465, are not supported yet)";
        break;
    case S_CAPTURE_DIR:
        if (strlen(v) >= sizeof c->capture_dir)
            bad = "a shorter path";
        else
            strcpy(c->capture_dir, v);
        break;
    case S_FORMAT:
        if (strcasecmp(v, "text") != 0) bad = "text (jsonl, pcap and eml are not supported yet)";
        break;
    case S_CLIENT_STARTTLS:
        if (strcasecmp(v, "passthrough") == 0)
            c->client_starttls = CLIENT_STARTTLS_PASSTHROUGH;
        else if (strcasecmp(v, "offer") == 0 || strcasecmp(v, "strip") == 0)
            bad = "passthrough (offer and strip are not supported yet)";
        else
            bad = "offer, strip or passthrough (only passthrough is supported yet)";
        break;
    case S_MAX_SESSIONS:
        if (!(bad = parse_uint(v, 1, 1000000, &n)))
            c->max_sessions = n;
        else
            bad = "a whole number from 1 to 1000000";
        break;
    case S_IDLE_TIMEOUT:
    case S_CONNECT_TIMEOUT:
        if (!(bad = parse_duration_ms(v, &n)) && n == 0) bad = "a duration above zero";
        if (!bad) *(id == S_IDLE_TIMEOUT ? &c->idle_timeout_ms : &c->connect_timeout_ms) = n;
        break;
    case S_COLOR:
        if (strcasecmp(v, "auto") == 0)
            c->color = COLOR_AUTO;
        else if (strcasecmp(v, "always") == 0)
            c->color = COLOR_ALWAYS;
        else if (strcasecmp(v, "never") == 0)
            c->color = COLOR_NEVER;
        else
            bad = "auto, always or never";
        break;
    case S_LATER:
        buf_printf(err, "%s: not supported yet in this version of smtptap", name);
        return "";
    case S_LATER_BOOL:
        if ((bad = parse_bool(v, &b))) break;
        if (!b) return NULL;
        buf_printf(err, "%s = %s: not supported yet in this version of smtptap (use no)", name, v);
        return "";
    case S_LATER_EMPTY:
        if (!*v) return NULL;
        buf_printf(err, "%s = %s: not supported yet in this version of smtptap (leave it empty)",
                   name, v);
        return "";
    }
    if (bad) buf_printf(err, "%s: invalid value \"%s\"; expected %s", name, v, bad);
    return bad;
}

/* ---- the INI file ---------------------------------------------------------------------- */

static const struct ini_key {
    const char *section, *key;
    enum setting_id id;
} ini_keys[] = {
    {"listen", "address", S_LISTEN},
    {"listen", "client_starttls", S_CLIENT_STARTTLS},
    {"listen", "max_sessions", S_MAX_SESSIONS},
    {"listen", "idle_timeout", S_IDLE_TIMEOUT},
    {"upstream", "target", S_UPSTREAM},
    {"upstream", "connect_timeout", S_CONNECT_TIMEOUT},
    {"upstream", "ca", S_LATER_EMPTY},
    {"upstream", "insecure", S_LATER_BOOL},
    {"tls", "ca_dir", S_LATER_EMPTY},
    {"tls", "keylog", S_LATER_EMPTY},
    {"capture", "dir", S_CAPTURE_DIR},
    {"capture", "format", S_FORMAT},
    {"capture", "decode_auth", S_LATER_BOOL},
    {"capture", "redact", S_LATER_BOOL},
    {"sink", "users", S_LATER_EMPTY},
};

struct ini_state {
    struct config *c;
    struct buf *err;
    const char *path;
    bool listen_reset;
    char section[64];
};

static void list_keys(struct buf *out, const char *section)
{
    const char *sep = "";
    for (size_t i = 0; i < sizeof ini_keys / sizeof ini_keys[0]; i++) {
        if (strcmp(ini_keys[i].section, section)) continue;
        buf_printf(out, "%s%s", sep, ini_keys[i].key);
        sep = ", ";
    }
}

static int on_ini_value(void *user, const char *section, const char *key, const char *value)
{
    struct ini_state *st = user;
    bool known_section = false;
    if (buf_size(st->err)) return 0; /* inih goes on after an error: report only the first */
    if (strncasecmp(section, "fault", 5) == 0 && (section[5] == 0 || section[5] == ' ')) {
        buf_printf(st->err, "%s: section [%s]: fault rules are not supported yet", st->path,
                   section);
        return 0;
    }
    for (size_t i = 0; i < sizeof ini_keys / sizeof ini_keys[0]; i++) {
        if (strcmp(ini_keys[i].section, section) != 0) continue;
        known_section = true;
        if (strcmp(ini_keys[i].key, key) != 0) continue;
        char name[160];
        snprintf(name, sizeof name, "%s: [%s] %s", st->path, section, key);
        return apply(st->c, ini_keys[i].id, name, value, &st->listen_reset, st->err) ? 0 : 1;
    }
    if (!known_section) {
        buf_printf(st->err,
                   "%s: unknown section [%s]; expected listen, upstream, tls, capture, sink "
                   "or fault NAME",
                   st->path, section);
        return 0;
    }
    buf_printf(st->err, "%s: unknown key \"%s\" in [%s]; expected one of: ", st->path, key,
               section);
    list_keys(st->err, section);
    return 0;
}

enum config_result config_load_file(struct config *c, const char *path, struct buf *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        buf_printf(err, "--config %s: cannot read the file: %s", path, strerror(errno));
        return CONFIG_ERR_CONFIG;
    }
    struct ini_state st = {.c = c, .err = err, .path = path};
    int line = ini_parse_file(f, on_ini_value, &st);
    int read_errno = ferror(f) ? (errno ? errno : EIO) : 0; /* inih takes EISDIR for EOF */
    fclose(f);
    if (read_errno && buf_size(err) == 0) {
        buf_printf(err, "--config %s: cannot read the file: %s", path, strerror(read_errno));
        return CONFIG_ERR_CONFIG;
    }
    if (line == 0) return CONFIG_OK;
    if (buf_size(err) == 0)
        buf_printf(err, "%s: line %d: not an INI line; expected [section] or key = value", path,
                   line);
    else
        buf_printf(err, " (line %d)", line);
    return CONFIG_ERR_CONFIG;
}

/* ---- the command line ----------------------------------------------------------------- */

enum {
    O_FORMAT = 256,
    O_CLIENT_STARTTLS,
    O_MAX_SESSIONS,
    O_IDLE_TIMEOUT,
    O_CONNECT_TIMEOUT,
    O_COLOR,
    O_LATER_ARG,
    O_LATER_FLAG
};

static const struct option long_opts[] = {
    {"listen", required_argument, 0, 'l'},
    {"upstream", required_argument, 0, 'u'},
    {"config", required_argument, 0, 'c'},
    {"capture-dir", required_argument, 0, 'd'},
    {"format", required_argument, 0, O_FORMAT},
    {"client-starttls", required_argument, 0, O_CLIENT_STARTTLS},
    {"max-sessions", required_argument, 0, O_MAX_SESSIONS},
    {"idle-timeout", required_argument, 0, O_IDLE_TIMEOUT},
    {"connect-timeout", required_argument, 0, O_CONNECT_TIMEOUT},
    {"color", required_argument, 0, O_COLOR},
    {"colour", required_argument, 0, O_COLOR},
    {"quiet", no_argument, 0, 'q'},
    {"verbose", no_argument, 0, 'v'},
    {"version", no_argument, 0, 'V'},
    {"help", no_argument, 0, 'h'},
    {"decode-auth", no_argument, 0, O_LATER_FLAG},
    {"redact", no_argument, 0, O_LATER_FLAG},
    {"insecure", no_argument, 0, O_LATER_FLAG},
    {"print-ca", no_argument, 0, O_LATER_FLAG},
    {"fault", required_argument, 0, O_LATER_ARG},
    {"seed", required_argument, 0, O_LATER_ARG},
    {"upstream-ca", required_argument, 0, O_LATER_ARG},
    {"ca-dir", required_argument, 0, O_LATER_ARG},
    {"keylog", required_argument, 0, O_LATER_ARG},
    {0, 0, 0, 0},
};

static enum setting_id setting_of(int opt)
{
    switch (opt) {
    case 'l': return S_LISTEN;
    case 'u': return S_UPSTREAM;
    case 'd': return S_CAPTURE_DIR;
    case O_FORMAT: return S_FORMAT;
    case O_CLIENT_STARTTLS: return S_CLIENT_STARTTLS;
    case O_MAX_SESSIONS: return S_MAX_SESSIONS;
    case O_IDLE_TIMEOUT: return S_IDLE_TIMEOUT;
    case O_CONNECT_TIMEOUT: return S_CONNECT_TIMEOUT;
    case O_COLOR: return S_COLOR;
    default: return S_LATER;
    }
}

static const char *flag_name(int opt, int long_index, char *tmp, size_t size)
{
    if (long_index >= 0) {
        snprintf(tmp, size, "--%s", long_opts[long_index].name);
        return tmp;
    }
    for (const struct option *o = long_opts; o->name; o++)
        if (o->val == opt) {
            snprintf(tmp, size, "--%s", o->name);
            return tmp;
        }
    snprintf(tmp, size, "-%c", opt);
    return tmp;
}

static enum config_result bad_option(char **argv, int optopt_value, struct buf *err)
{
    const char *arg = argv[optind - 1];
    if (optopt_value && strncmp(arg, "--", 2) != 0) {
        bool needs_arg = strchr("lucd", optopt_value) != NULL;
        buf_printf(err,
                   needs_arg ? "-%c needs a value; see smtptap --help"
                             : "unknown option -%c; see smtptap --help for the options",
                   optopt_value);
        return CONFIG_ERR_USAGE;
    }
    for (const struct option *o = long_opts; o->name; o++) {
        size_t n = strlen(o->name);
        if (strncmp(arg + 2, o->name, n) == 0 && (arg[2 + n] == 0 || arg[2 + n] == '=')) {
            buf_printf(err, "--%s %s", o->name,
                       o->has_arg == required_argument ? "needs a value; see smtptap --help"
                                                       : "takes no value");
            return CONFIG_ERR_USAGE;
        }
    }
    buf_printf(err, "unknown option \"%s\"; see smtptap --help for the options", arg);
    return CONFIG_ERR_USAGE;
}

enum config_result config_from_args(struct config *c, int argc, char **argv, struct buf *err)
{
    config_defaults(c);
    /* Pass 1: -c, --help and --version, and the syntax of every flag. */
    opterr = 0;
    optind = 0; /* 0, not 1: also drops getopt's position inside a "-abc" of an earlier call */
    int opt, idx;
    const char *shortopts = "+l:u:c:d:qvVh";
    while ((idx = -1, opt = getopt_long(argc, argv, shortopts, long_opts, &idx)) != -1) {
        if (opt == '?' || opt == ':') return bad_option(argv, optopt, err);
        if (opt == 'h') return CONFIG_HELP;
        if (opt == 'V') return CONFIG_VERSION;
        if (opt == 'c') snprintf(c->config_file, sizeof c->config_file, "%s", optarg);
    }
    if (optind < argc) {
        buf_printf(err, "unexpected argument \"%s\"; options start with - (see smtptap --help)",
                   argv[optind]);
        return CONFIG_ERR_USAGE;
    }
    if (c->config_file[0]) {
        enum config_result r = config_load_file(c, c->config_file, err);
        if (r != CONFIG_OK) return r;
    }
    /* Pass 2: flags override the file. */
    bool listen_reset = false;
    optind = 0;
    while ((idx = -1, opt = getopt_long(argc, argv, shortopts, long_opts, &idx)) != -1) {
        char name[64];
        switch (opt) {
        case 'c': break;
        case 'q': c->verbosity = -1; break;
        case 'v': c->verbosity = 1; break;
        default:
            if (apply(c, setting_of(opt), flag_name(opt, idx, name, sizeof name),
                      optarg ? optarg : "", &listen_reset, err))
                return CONFIG_ERR_USAGE;
        }
    }
    return CONFIG_OK;
}

/* control_api.c - the control API's JSON routes: health, statistics, sessions (summaries,
 * events as the jsonl capture has them, capture files) and fault rules. */
#include "control_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "smtptap/capture.h"
#include "smtptap/leg.h"
#include "smtptap/text.h"

/* ---- small JSON helpers -----------------------------------------------------------------------
 */

static json_t *address(const struct sockaddr_storage *ss)
{
    if (ss->ss_family != AF_INET && ss->ss_family != AF_INET6) return json_null();
    char text[80];
    sockaddr_format((const struct sockaddr *)ss, text, sizeof text);
    return json_string(text);
}

static json_t *rfc3339(uint64_t wall_us)
{
    if (!wall_us) return json_null();
    time_t secs = (time_t)(wall_us / 1000000u);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char text[64], stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(text, sizeof text, "%s.%06uZ", stamp, (unsigned)(wall_us % 1000000u));
    return json_string(text);
}

/* A string that may not be UTF-8 (a HELO name, a reply line): as is, or null. */
static json_t *text_or_null(const char *s)
{
    if (!s[0]) return json_null();
    json_t *j = json_string(s);
    return j ? j : json_null();
}

static json_t *ms(uint64_t ns)
{
    return json_real((double)(ns / 1000) / 1000.0);
}

static json_t *tls_json(const struct control_tls *t, bool upstream)
{
    if (!t->on) return json_null();
    json_t *o = json_pack("{s:s?,s:s?}", "version", t->version, "cipher", t->cipher);
    if (!o) return json_null();
    json_object_set_new(o, upstream ? "verify" : "sni",
                        json_string(upstream ? t->verify : t->sni) ?: json_null());
    return o;
}

/* ---- captures on disk ------------------------------------------------------------------------ */

/* The capture file of s with extension ext (message K for eml), found by the name capture.c
 * gives it: STAMP-N-CLIENT.ext, STAMP the session's start (a second either side for the
 * clock's tick). True with path set when it exists. */
static bool capture_path(const struct control *c, const struct control_session *s, const char *ext,
                         uint64_t message, char *path, size_t size)
{
    const char *dir = c->cfg->capture_dir;
    if (!dir[0] || strcmp(dir, "-") == 0) return false;
    char client[96], base[4300];
    sockaddr_format((const struct sockaddr *)&s->client, client, sizeof client);
    time_t start = (time_t)(s->started_us / 1000000u);
    static const int around[] = {0, 1, -1}; /* the files' second may be the next or last one */
    for (size_t i = 0; i < 3; i++) {
        capture_base_name(dir, start + around[i], s->id, client, base, sizeof base);
        if (strcmp(ext, "eml") == 0)
            snprintf(path, size, "%s-%llu.eml", base, (unsigned long long)(message ? message : 1));
        else
            snprintf(path, size, "%s.%s", base, ext);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) return true;
    }
    return false;
}

static const struct {
    const char *route, *ext, *type;
    unsigned format;
} capture_formats[] = {
    {"txt", "txt", "text/plain; charset=utf-8", FORMAT_TEXT},
    {"jsonl", "jsonl", "application/x-ndjson", FORMAT_JSONL},
    {"pcap", "pcap", "application/vnd.tcpdump.pcap", FORMAT_PCAP},
    {"eml", "eml", "message/rfc822", FORMAT_EML},
};

/* The formats of s that can be downloaded: txt and jsonl always (from memory when not on
 * disk), pcap and eml when their files exist. */
static json_t *captures_json(const struct control *c, const struct control_session *s)
{
    json_t *a = json_array();
    char path[4400];
    for (size_t i = 0; i < sizeof capture_formats / sizeof capture_formats[0]; i++) {
        bool memory = capture_formats[i].format & (FORMAT_TEXT | FORMAT_JSONL);
        bool want = memory || (c->cfg->formats & capture_formats[i].format);
        if (!want) continue;
        if (memory || capture_path(c, s, capture_formats[i].ext, 0, path, sizeof path))
            json_array_append_new(a, json_string(capture_formats[i].route));
    }
    return a;
}

/* ---- sessions ----------------------------------------------------------------------------- */

json_t *control_session_json(const struct control *c, const struct control_session *s)
{
    double duration = (double)(s->t_ns / 1000) / 1e6;
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer((json_int_t)s->id));
    json_object_set_new(o, "state", json_string(s->live ? "live" : "ended"));
    json_object_set_new(o, "started", rfc3339(s->started_us));
    json_object_set_new(o, "ended", rfc3339(s->ended_us));
    json_object_set_new(o, "duration_s", json_real(duration));
    json_object_set_new(o, "client", address(&s->client));
    json_object_set_new(o, "listener", address(&s->listener));
    json_object_set_new(o, "upstream", address(&s->upstream));
    json_object_set_new(o, "helo", text_or_null(s->helo));
    json_object_set_new(o, "tls",
                        json_pack("{s:o,s:o}", "client", tls_json(&s->tls_client, false),
                                  "upstream", tls_json(&s->tls_upstream, true)));
    json_t *auth = s->auth_mech[0] ? json_pack("{s:s}", "mech", s->auth_mech) : json_null();
    if (auth && s->auth_user[0]) json_object_set_new(auth, "user", json_string(s->auth_user));
    if (auth && s->auth_outcome[0]) {
        json_object_set_new(auth, "outcome", json_string(s->auth_outcome));
        json_object_set_new(auth, "code", json_integer(s->auth_code));
    }
    json_object_set_new(o, "auth", auth ? auth : json_null());
    json_object_set_new(o, "counts",
                        json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "commands", (json_int_t)s->commands,
                                  "replies", (json_int_t)s->replies, "messages",
                                  (json_int_t)s->messages, "faults", (json_int_t)s->faults, "lint",
                                  (json_int_t)s->lint, "errors", (json_int_t)s->errors));
    json_object_set_new(o, "codes",
                        json_pack("{s:I,s:I,s:I,s:I}", "2xx", (json_int_t)s->codes[0], "3xx",
                                  (json_int_t)s->codes[1], "4xx", (json_int_t)s->codes[2], "5xx",
                                  (json_int_t)s->codes[3]));
    json_object_set_new(o, "latency_ms",
                        json_pack("{s:o,s:o,s:o}", "server_wait", ms(s->server_wait_ns), "last",
                                  ms(s->last_latency_ns), "max", ms(s->max_latency_ns)));
    json_object_set_new(
        o, "bytes",
        json_pack("{s:I,s:I}", "up", (json_int_t)s->bytes_up, "down", (json_int_t)s->bytes_down));
    json_object_set_new(o, "last_reply", text_or_null(s->last_reply));
    json_t *verdict = json_null();
    if (s->verdict) {
        json_t *ev = jsonl_event_json(s->verdict);
        json_t *v = ev ? json_object_get(ev, "verdict") : NULL;
        if (v) verdict = json_incref(v);
        json_decref(ev);
    }
    json_object_set_new(o, "verdict", verdict);
    json_object_set_new(o, "captures", captures_json(c, s));
    json_object_set_new(o, "events_dropped", json_integer((json_int_t)s->events_dropped));
    return o;
}

/* The summary of s as JSON text: made once for a session that ended over a second ago (it
 * does not change any more: its capture files, written by the writer thread, are complete;
 * a list of 1,000 sessions is then mostly copying), each time for others. NULL when it
 * cannot be made. free_after is set when the caller must free it. */
static const char *summary_text(struct control *c, struct control_session *s, bool *free_after)
{
    *free_after = false;
    if (s->summary_text) return s->summary_text;
    json_t *j = control_session_json(c, s);
    char *text = j ? json_dumps(j, CONTROL_JSON_FLAGS) : NULL;
    json_decref(j);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t now_us = (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
    if (text && !s->live && now_us > s->ended_us + 1000000u)
        s->summary_text = text;
    else
        *free_after = true;
    return text;
}

static void sessions(struct control *c, h2o_req_t *req, uint64_t limit)
{
    struct buf out;
    buf_init(&out);
    buf_append_str(&out, "{\"sessions\":[");
    uint64_t n = 0;
    for (struct control_session *s = c->store.newest; s && (!limit || n < limit); s = s->older) {
        bool free_after;
        const char *text = summary_text(c, s, &free_after);
        if (!text) continue;
        if (n++) buf_append_str(&out, ",");
        buf_append_str(&out, text);
        if (free_after) free((char *)text);
    }
    buf_append_str(&out, "]}\n");
    size_t len = buf_size(&out);
    char *body = h2o_mem_alloc_pool(&req->pool, len);
    memcpy(body, buf_head(&out), len);
    buf_free(&out);
    control_respond(req, 200, "OK", "application/json", body, len);
}

static bool add_event(void *ctx, const struct event *ev)
{
    json_t *o = jsonl_event_json(ev);
    if (o) json_array_append_new(ctx, o);
    return true;
}

static const struct control_session *found(struct control *c, h2o_req_t *req, uint64_t id)
{
    const struct control_session *s = control_store_find(&c->store, id);
    if (s) return s;
    char text[160];
    snprintf(text, sizeof text,
             "no session #%llu: not yet, or ended longer ago than the %zu recent ones kept "
             "(--control-recent)",
             (unsigned long long)id, c->store.recent_max);
    control_respond_error(req, 404, "Not Found", text);
    return NULL;
}

static void session(struct control *c, h2o_req_t *req, const struct control_request *r)
{
    const struct control_session *s = found(c, req, r->session);
    if (!s) return;
    json_t *events = json_array();
    control_session_each_event(s, add_event, events);
    control_respond_json(
        req, 200, "OK",
        json_pack("{s:o,s:o}", "session", control_session_json(c, s), "events", events));
}

/* A capture rendered from the stored events (txt or jsonl without a file on disk). */
struct render {
    struct buf out;
    bool text;
};

static bool render_event(void *ctx, const struct event *ev)
{
    struct render *r = ctx;
    if (r->text) {
        text_format_event(ev, false, &r->out);
        return true;
    }
    size_t len;
    char *line = jsonl_event_line(ev, &len);
    if (line) buf_append(&r->out, line, len), buf_append(&r->out, "\n", 1);
    free(line);
    return true;
}

static void capture_from_memory(h2o_req_t *req, const struct control_session *s, bool text,
                                const char *type, const char *disposition)
{
    struct render r = {.text = text};
    buf_init(&r.out);
    control_session_each_event(s, render_event, &r);
    size_t len = buf_size(&r.out);
    char *body = h2o_mem_alloc_pool(&req->pool, len ? len : 1);
    if (len) memcpy(body, buf_head(&r.out), len);
    buf_free(&r.out);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_DISPOSITION, NULL,
                   h2o_strdup(&req->pool, disposition, SIZE_MAX).base, strlen(disposition));
    control_respond(req, 200, "OK", type, body, len);
}

static void capture(struct control *c, h2o_req_t *req, const struct control_request *r)
{
    const struct control_session *s = found(c, req, r->session);
    if (!s) return;
    size_t i = 0;
    while (strcmp(capture_formats[i].route, r->format) != 0) i++;
    char path[4400];
    bool on_disk = capture_path(c, s, capture_formats[i].ext, r->message, path, sizeof path);
    char disposition[160];
    if (strcmp(r->format, "eml") == 0)
        snprintf(disposition, sizeof disposition, "attachment; filename=\"session-%llu-%llu.eml\"",
                 (unsigned long long)s->id, (unsigned long long)(r->message ? r->message : 1));
    else
        snprintf(disposition, sizeof disposition, "attachment; filename=\"session-%llu.%s\"",
                 (unsigned long long)s->id, capture_formats[i].ext);
    if (!on_disk && (capture_formats[i].format & (FORMAT_TEXT | FORMAT_JSONL))) {
        capture_from_memory(req, s, capture_formats[i].format == FORMAT_TEXT,
                            capture_formats[i].type, disposition);
        return;
    }
    if (!on_disk) {
        char text[200];
        snprintf(text, sizeof text,
                 "session #%llu has no %s capture%s (smtptap writes one with -d DIR --format %s)",
                 (unsigned long long)s->id, r->format,
                 strcmp(r->format, "eml") == 0 ? " of that message" : "",
                 strcmp(r->format, "txt") == 0 ? "text" : r->format);
        control_respond_error(req, 404, "Not Found", text);
        return;
    }
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_DISPOSITION, NULL,
                   h2o_strdup(&req->pool, disposition, SIZE_MAX).base, strlen(disposition));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    if (h2o_file_send(req, 200, "OK", path,
                      h2o_iovec_init(capture_formats[i].type, strlen(capture_formats[i].type)),
                      0) != 0)
        control_respond_error(req, 404, "Not Found", "the capture file cannot be read");
}

/* ---- health and statistics ------------------------------------------------------------------- */

static void health(struct control *c, h2o_req_t *req)
{
    double up = (double)((uv_hrtime() - c->started_ns) / 1000000) / 1000.0;
    control_respond_json(req, 200, "OK",
                         json_pack("{s:s,s:s,s:f,s:I}", "status", "ok", "version", SMTPTAP_VERSION,
                                   "uptime_s", up, "sessions_live", (json_int_t)c->store.live));
}

static void stats(struct control *c, h2o_req_t *req)
{
    const struct control_totals *t = &c->store.totals;
    uint64_t up = t->bytes_up, down = t->bytes_down;
    for (const struct control_session *s = c->store.newest; s; s = s->older)
        if (s->live) up += s->bytes_up, down += s->bytes_down;
    json_t *j =
        json_pack("{s:{s:I,s:I,s:I,s:I},s:I,s:I,s:{s:I,s:I},s:I,s:I,s:{s:I,s:I}}", "sessions",
                  "total", (json_int_t)t->sessions, "live", (json_int_t)c->store.live, "recent",
                  (json_int_t)c->store.ended, "recent_max", (json_int_t)c->store.recent_max,
                  "commands", (json_int_t)t->commands, "messages", (json_int_t)t->messages, "bytes",
                  "up", (json_int_t)up, "down", (json_int_t)down, "faults_fired",
                  (json_int_t)t->faults_fired, "lint", (json_int_t)t->lint, "sse", "clients",
                  (json_int_t)c->nstreams, "dropped", (json_int_t)c->streams_dropped);
    control_respond_json(req, 200, "OK", j);
}

/* ---- fault rules ---------------------------------------------------------------------------- */

void control_count_fired(struct control *c, const struct event *ev)
{
    if (!ev->facts || ev->facts->fault.change || !ev->facts->fault.rule) return;
    const char *name = ev->facts->fault.rule;
    for (size_t i = 0; i < c->nfired; i++)
        if (strcmp(c->fired[i].name, name) == 0) {
            c->fired[i].n++;
            return;
        }
    struct fired_count *more = realloc(c->fired, (c->nfired + 1) * sizeof *more);
    if (!more) abort();
    c->fired = more;
    snprintf(c->fired[c->nfired].name, sizeof c->fired[0].name, "%s", name);
    c->fired[c->nfired++].n = 1;
}

static uint64_t fired(const struct control *c, const char *name)
{
    for (size_t i = 0; i < c->nfired; i++)
        if (strcmp(c->fired[i].name, name) == 0) return c->fired[i].n;
    return 0;
}

static json_t *rule_json(const struct control *c, const struct fault_rule *r, const char *origin)
{
    struct buf text;
    buf_init(&text);
    fault_rule_describe(r, &text);
    json_t *o = json_pack("{s:s,s:s,s:s%,s:s,s:s,s:s}", "name", r->name, "origin", origin, "rule",
                          (const char *)buf_head(&text), buf_size(&text), "stage",
                          fault_stage_name(r->stage), "match", r->match, "action",
                          fault_action_name(r->action));
    buf_free(&text);
    if (!o) return json_null();
    if (r->nth) json_object_set_new(o, "nth", json_integer((json_int_t)r->nth));
    if (r->probability < 1) json_object_set_new(o, "probability", json_real(r->probability));
    json_object_set_new(o, "fired", json_integer((json_int_t)fired(c, r->name)));
    return o;
}

static void list_faults(struct control *c, h2o_req_t *req)
{
    const struct fault_book *b = c->host.faults;
    json_t *rules = json_array();
    for (size_t i = 0; b->in_force && i < b->in_force->count; i++)
        json_array_append_new(rules, rule_json(c, &b->in_force->rules[i],
                                               fault_origin_name(fault_book_origin(b, i))));
    control_respond_json(req, 200, "OK", json_pack("{s:o}", "rules", rules));
}

static void get_fault(struct control *c, h2o_req_t *req, const char *name)
{
    const struct fault_book *b = c->host.faults;
    for (size_t i = 0; b->in_force && i < b->in_force->count; i++)
        if (strcmp(b->in_force->rules[i].name, name) == 0) {
            control_respond_json(req, 200, "OK",
                                 json_pack("{s:o}", "rule",
                                           rule_json(c, &b->in_force->rules[i],
                                                     fault_origin_name(fault_book_origin(b, i)))));
            return;
        }
    control_respond_error(req, 404, "Not Found", "no fault rule of that name");
}

static uint64_t live(const struct control *c)
{
    return c->host.live_sessions(c->host.server);
}

static uint64_t newest(const struct control *c)
{
    return c->host.newest_session(c->host.server);
}

static void add_fault(struct control *c, h2o_req_t *req)
{
    struct fault_rule r;
    char err[700];
    if (control_fault_from_body((const uint8_t *)req->entity.base, req->entity.len, &r, err,
                                sizeof err) != 0) {
        control_respond_error(req, 400, "Bad Request", err);
        return;
    }
    if (fault_book_add(c->host.faults, &r, live(c), newest(c), err, sizeof err) != 0) {
        control_respond_error(req, 409, "Conflict", err);
        return;
    }
    c->host.faults_changed(c->host.server, &r, "added");
    char location[16 + 3 * FAULT_NAME_MAX] = "/api/faults/";
    size_t n = strlen(location);
    for (const unsigned char *p = (const unsigned char *)r.name; *p; p++) /* percent-encoded */
        n += (size_t)snprintf(location + n, sizeof location - n,
                              isalnum(*p) || strchr("-._~", *p) ? "%c" : "%%%02X", *p);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL,
                   h2o_strdup(&req->pool, location, n).base, n);
    control_respond_json(req, 201, "Created", json_pack("{s:o}", "rule", rule_json(c, &r, "api")));
}

static void remove_fault(struct control *c, h2o_req_t *req, const char *name)
{
    struct fault_rule r;
    int rc = fault_book_remove(c->host.faults, name, &r, live(c), newest(c));
    if (rc == -1) {
        control_respond_error(req, 404, "Not Found", "no fault rule of that name");
        return;
    }
    if (rc == -2) {
        control_respond_error(req, 409, "Conflict",
                              "that rule comes from --fault or the configuration file; the API "
                              "removes only its own (edit the file and send SIGHUP)");
        return;
    }
    c->host.faults_changed(c->host.server, &r, "removed");
    control_respond_json(req, 200, "OK", json_pack("{s:o}", "removed", rule_json(c, &r, "api")));
}

static void reset_faults(struct control *c, h2o_req_t *req)
{
    struct fault_book *b = c->host.faults;
    size_t n = b->api.count;
    struct fault_rule *gone = n ? malloc(n * sizeof *gone) : NULL;
    if (n && !gone) abort();
    if (n) memcpy(gone, b->api.rules, n * sizeof *gone);
    fault_book_reset(b, live(c), newest(c));
    for (size_t i = 0; i < n; i++) c->host.faults_changed(c->host.server, &gone[i], "removed");
    free(gone);
    control_respond_json(req, 200, "OK", json_pack("{s:I}", "removed", (json_int_t)n));
}

/* ---- dispatch ---------------------------------------------------------------------------------
 */

static bool is_method(const h2o_req_t *req, const char *m)
{
    return req->method.len == strlen(m) && memcmp(req->method.base, m, req->method.len) == 0;
}

void control_api_dispatch(struct control *c, h2o_req_t *req, const struct control_request *r)
{
    switch (r->route) {
    case ROUTE_HEALTH: health(c, req); break;
    case ROUTE_STATS: stats(c, req); break;
    case ROUTE_SESSIONS: sessions(c, req, r->limit); break;
    case ROUTE_SESSION: session(c, req, r); break;
    case ROUTE_CAPTURE: capture(c, req, r); break;
    case ROUTE_FAULTS:
        if (is_method(req, "POST"))
            add_fault(c, req);
        else
            list_faults(c, req);
        break;
    case ROUTE_FAULT:
        if (is_method(req, "DELETE"))
            remove_fault(c, req, r->name);
        else
            get_fault(c, req, r->name);
        break;
    case ROUTE_FAULTS_RESET: reset_faults(c, req); break;
    default: control_respond_error(req, 404, "Not Found", "no such route"); break;
    }
}

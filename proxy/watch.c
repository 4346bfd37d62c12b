/* watch.c - which sessions the live transcript shows, and the summary line of a finished
 * session, from its events (see watch.h). Pure: no I/O. */
#include "smtptap/watch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smtptap/fault.h"

/* ---- the filter --------------------------------------------------------------------------- */

static const char expected_globs[] =
    "a comma-separated list of globs (* and ? match, any case) on the client's address, with or "
    "without its port, or on its EHLO/HELO name, e.g. 127.0.0.1:*, 10.0.*, [::1]:*, *.example.com "
    "(each glob non-empty, printable, without blanks, at most 127 bytes; at most 16)";

static const char expected_sessions[] =
    "a comma-separated list of session numbers as the transcript shows them (#3 is 3), each 1 or "
    "more (at most 64), e.g. 3 or 3,7";

/* The next item of a comma-separated list, blanks around it left out: [start, *item_end);
 * *at moves past its comma, and *end is where the item's part of the list ends (its comma or
 * the list's end). */
static size_t next_item(const char *list, size_t *at, size_t *end, size_t *item_end)
{
    size_t start = *at;
    const char *comma = strchr(list + start, ',');
    *end = comma ? (size_t)(comma - list) : strlen(list);
    *at = comma ? *end + 1 : *end;
    while (start < *end && list[start] == ' ') start++;
    *item_end = *end;
    while (*item_end > start && list[*item_end - 1] == ' ') (*item_end)--;
    return start;
}

static bool good_glob(const char *g, size_t n)
{
    if (n == 0 || n >= WATCH_GLOB_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)g[i] <= ' ' || (unsigned char)g[i] >= 0x7f) return false;
    return true;
}

const char *watch_add_globs(struct watch_filter *f, const char *list)
{
    struct watch_filter next = *f;
    size_t at = 0, end, item_end;
    do {
        size_t start = next_item(list, &at, &end, &item_end), n = item_end - start;
        if (!good_glob(list + start, n) || next.nglobs == WATCH_MAX_GLOBS) return expected_globs;
        memcpy(next.globs[next.nglobs], list + start, n);
        next.globs[next.nglobs++][n] = 0;
    } while (list[end]);
    *f = next;
    return NULL;
}

const char *watch_add_sessions(struct watch_filter *f, const char *list)
{
    struct watch_filter next = *f;
    size_t at = 0, end, item_end;
    do {
        size_t start = next_item(list, &at, &end, &item_end);
        uint64_t n = 0;
        if (item_end == start || item_end - start > 19 || next.nsessions == WATCH_MAX_SESSIONS)
            return expected_sessions;
        for (size_t i = start; i < item_end; i++) {
            if (list[i] < '0' || list[i] > '9') return expected_sessions;
            n = n * 10 + (uint64_t)(list[i] - '0');
        }
        if (n == 0) return expected_sessions;
        next.sessions[next.nsessions++] = n;
    } while (list[end]);
    *f = next;
    return NULL;
}

bool watch_filters(const struct watch_filter *f)
{
    return f->nglobs || f->nsessions;
}

bool watch_picks_number(const struct watch_filter *f, uint64_t session)
{
    for (size_t i = 0; i < f->nsessions; i++)
        if (f->sessions[i] == session) return true;
    return false;
}

bool watch_picks_text(const struct watch_filter *f, const char *text)
{
    for (size_t i = 0; i < f->nglobs; i++)
        if (fault_glob(f->globs[i], (const uint8_t *)text, strlen(text))) return true;
    return false;
}

bool watch_picks_address(const struct watch_filter *f, const char *address)
{
    if (watch_picks_text(f, address)) return true;
    char ip[WATCH_GLOB_MAX + 64];
    const char *colon = strrchr(address, ':');
    if (!colon) return false;
    size_t from = address[0] == '[' ? 1 : 0, to = (size_t)(colon - address);
    if (from && to > 0 && address[to - 1] == ']') to--;
    if (to <= from || to - from >= sizeof ip) return false;
    memcpy(ip, address + from, to - from);
    ip[to - from] = 0;
    return watch_picks_text(f, ip);
}

bool watch_hello_name(const uint8_t *command, size_t len, char *out, size_t size)
{
    if (len < 4 || (strncasecmp((const char *)command, "EHLO", 4) != 0 &&
                    strncasecmp((const char *)command, "HELO", 4) != 0))
        return false;
    if (len > 4 && command[4] != ' ' && command[4] != '\r' && command[4] != '\n') return false;
    size_t i = 4, n = 0;
    while (i < len && command[i] == ' ') i++;
    while (i < len && command[i] != '\r' && command[i] != '\n' && command[i] != ' ' &&
           n + 1 < size) {
        out[n++] = command[i] > ' ' && command[i] < 0x7f ? (char)command[i] : '?';
        i++;
    }
    out[n] = 0;
    return true;
}

/* ---- the summary -------------------------------------------------------------------------- */

static void format_address(const struct sockaddr_storage *ss, char *out, size_t size)
{
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        if (inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip)) {
            snprintf(out, size, "%s:%u", ip, ntohs(in->sin_port));
            return;
        }
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip)) {
            snprintf(out, size, "[%s]:%u", ip, ntohs(in6->sin6_port));
            return;
        }
    }
    snprintf(out, size, "?");
}

void watch_summary_init(struct watch_summary *w, uint64_t session, const char *upstream)
{
    memset(w, 0, sizeof *w);
    w->session = session;
    snprintf(w->client, sizeof w->client, "?");
    snprintf(w->upstream, sizeof w->upstream, "%s", upstream);
    snprintf(w->client_tls, sizeof w->client_tls, "-");
    snprintf(w->upstream_tls, sizeof w->upstream_tls, "-");
}

static void on_reply(struct watch_summary *w, const struct event *ev)
{
    if (ev->to_smtptap || !ev->facts || ev->facts->reply.edited_from) return;
    w->last_code = ev->facts->reply.code;
    w->replied_after = true;
}

static void on_delivery(struct watch_summary *w, const struct event *ev)
{
    if (!ev->facts) return;
    if (w->ncodes < WATCH_CODES_MAX)
        w->codes[w->ncodes++] = ev->facts->delivery.code;
    else
        w->more_codes = true;
    w->replied_after = false;
}

static void on_handshake(struct watch_summary *w, const struct event *ev)
{
    const struct event_tls_facts *t = &ev->facts->tls;
    char *to = t->upstream ? w->upstream_tls : w->client_tls;
    snprintf(to, sizeof w->client_tls, "%s", t->version && t->version[0] ? t->version : "TLS");
}

void watch_summary_feed(struct watch_summary *w, const struct event *ev)
{
    w->t_ns = ev->t_ns;
    switch (ev->kind) {
    case EV_START: format_address(&ev->facts->endpoints.a, w->client, sizeof w->client); break;
    case EV_UPSTREAM:
        format_address(&ev->facts->endpoints.a, w->upstream, sizeof w->upstream);
        break;
    case EV_COMMAND:
        if (!w->helo[0]) watch_hello_name(ev->bytes, ev->len, w->helo, sizeof w->helo);
        break;
    case EV_REPLY: on_reply(w, ev); break;
    case EV_DELIVERY: on_delivery(w, ev); break;
    case EV_INFO:
        if (ev->facts) on_handshake(w, ev); /* an INFO with facts is a TLS handshake */
        break;
    case EV_RAW: /* STARTTLS passed through: TLS between the client and the server */
        snprintf(w->client_tls, sizeof w->client_tls, "passthrough");
        snprintf(w->upstream_tls, sizeof w->upstream_tls, "passthrough");
        break;
    case EV_FAULT:
        if (!ev->facts || !ev->facts->fault.change) w->faults++;
        break;
    case EV_LINT: w->lints++; break;
    case EV_END:
        if (ev->facts) w->commands = ev->facts->end.commands, w->messages = ev->facts->end.messages;
        w->ended = true;
        break;
    default: break;
    }
}

void watch_summary_format(const struct watch_summary *w, struct buf *out)
{
    uint64_t ms = w->t_ns / 1000000;
    buf_printf(out, "#%llu +%llu.%03llu == summary %s -> %s helo=%s cmds=%llu msgs=%llu codes=",
               (unsigned long long)w->session, (unsigned long long)(ms / 1000),
               (unsigned long long)(ms % 1000), w->client, w->upstream, w->helo[0] ? w->helo : "-",
               (unsigned long long)w->commands, (unsigned long long)w->messages);
    const char *sep = "";
    for (size_t i = 0; i < w->ncodes; i++, sep = ",") buf_printf(out, "%s%d", sep, w->codes[i]);
    if (w->more_codes) buf_printf(out, "%s...", sep), sep = ",";
    if (w->replied_after && w->last_code) buf_printf(out, "%s%d", sep, w->last_code), sep = ",";
    if (!*sep) buf_append_str(out, "-");
    buf_printf(out, " tls=c:%s,u:%s faults=%llu lint=%llu\n", w->client_tls, w->upstream_tls,
               (unsigned long long)w->faults, (unsigned long long)w->lints);
}

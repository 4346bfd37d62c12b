/* session_hello.c - a session's EHLO/HELO replies: what the client is told about TLS in
 * them and what strip faults leave of them (shown as "<=" lines, as the client got them),
 * and the one client hello the server must not see (after a STARTTLS that smtptap
 * answered itself), answered from the server's last reply (hello.h says why). */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "session_int.h"
#include "smtptap/ehlo.h"

/* STARTTLS offered or removed: into out, and true; false when the reply keeps its own. */
static bool edit_starttls(struct session *s, enum smtp_verb verb, const uint8_t *reply, size_t len,
                          struct buf *out)
{
    enum client_starttls mode = s->cfg->client_starttls;
    if (verb != SMTP_VERB_EHLO || len < 3 || memcmp(reply, "250", 3) != 0 ||
        mode == CLIENT_STARTTLS_PASSTHROUGH)
        return false;
    bool has = ehlo_has(reply, len, "STARTTLS");
    bool want = mode == CLIENT_STARTTLS_OFFER && !tcp_leg_tls_started(&s->client);
    if (has == want) return false;
    if (want) {
        ehlo_add(reply, len, "STARTTLS", out);
        session_emitf(s, EV_INFO, DIR_S2C,
                      "smtptap offers STARTTLS to the client (added to the EHLO reply)");
    } else {
        fault_strip_caps(reply, len, "STARTTLS", out);
        session_emitf(s, EV_INFO, DIR_S2C, "smtptap removed STARTTLS from the EHLO reply (%s)",
                      tcp_leg_tls_started(&s->client) ? "the client is in TLS already"
                                                      : "--client-starttls strip");
    }
    return true;
}

bool hello_fault_applied(const struct smtp_pending *p)
{
    const struct fault_rule *r = p->fault;
    return r && r->action == FAULT_STRIP;
}

static int code_of(const uint8_t *b, size_t n)
{
    if (n < 3 || b[0] < '1' || b[0] > '9' || b[1] < '0' || b[1] > '9' || b[2] < '0' || b[2] > '9')
        return 0;
    return (b[0] - '0') * 100 + (b[1] - '0') * 10 + (b[2] - '0');
}

/* The "<=" lines of an edit, after the server's reply from which it was made; when the
 * server's reply waits for the client to get it (a delay fault, or earlier bytes held),
 * they wait with it. */
static void show_edit(struct session *s, const uint8_t *from, size_t from_len,
                      const struct buf *edit)
{
    if (!s->observed) return;
    int code = code_of(buf_head(edit), buf_size(edit));
    if (reply_defer_edit(s, buf_head(edit), buf_size(edit), code)) return;
    union event_facts f = {
        .reply = {.code = code, .edited_from = from, .edited_from_len = from_len}};
    session_emit_facts(s, EV_REPLY, DIR_S2C, buf_head(edit), buf_size(edit), NULL, false, &f);
}

bool hello_client_view(struct session *s, const struct smtp_pending *p, const uint8_t *reply,
                       size_t len, struct buf *out)
{
    struct buf offered;
    buf_init(&offered);
    const uint8_t *bytes = reply;
    size_t n = len;
    bool edited = edit_starttls(s, p->verb, reply, len, &offered);
    if (!edited && !hello_fault_applied(p)) return false; /* every other reply: no copy */
    if (edited) bytes = buf_head(&offered), n = buf_size(&offered);
    if (hello_fault_applied(p)) {
        const struct fault_rule *r = p->fault;
        unsigned removed = fault_strip_caps(bytes, n, r->strip, out);
        session_emit_fault(s, r, "fault %s: strip %s removed %u capabilit%s", r->name, r->strip,
                           removed, removed == 1 ? "y" : "ies");
    } else {
        buf_append(out, bytes, n);
    }
    buf_free(&offered);
    bool same = buf_size(out) == len && (len == 0 || memcmp(buf_head(out), reply, len) == 0);
    if (!same) show_edit(s, reply, len, out);
    return !same;
}

/* The "==" line that says why the server did not see this hello: why, then what differs. */
static void explain(struct session *s, const struct smtp_pending *p, const struct buf *line,
                    const char *why)
{
    const struct hello_memory *m = &s->hello;
    char renamed[HELLO_NAME_MAX + 80] = "";
    if (line && buf_size(line) && !hello_memory_same_name(m, buf_head(line), buf_size(line)))
        snprintf(renamed, sizeof renamed,
                 "; the client gives a new name, the server knows it as "
                 "\"%s\"",
                 m->name);
    session_emitf(s, EV_INFO, DIR_C2S,
                  "%s answered by smtptap from the server's reply, not forwarded: %s (%s %s); a "
                  "second greeting could be refused%s%s",
                  smtp_verb_name(p->verb), why, smtp_verb_name(m->verb),
                  m->name[0] ? m->name : "without a name", renamed,
                  p->verb == SMTP_VERB_EHLO && m->verb == SMTP_VERB_HELO
                      ? "; the server was greeted with HELO, so it granted no extensions"
                      : "");
}

/* Servers often offer AUTH only inside TLS: say why the client sees none. */
static void explain_missing_auth(struct session *s, const uint8_t *reply, size_t len)
{
    if (session_upstream_in_tls(s) || ehlo_has(reply, len, "AUTH") ||
        !ehlo_has(reply, len, "STARTTLS"))
        return;
    const struct upstream_spec *u = &s->cfg->upstream;
    session_emitf(
        s, EV_INFO, DIR_S2C,
        "the server offers no AUTH on its plain-text connection; if it offers AUTH only inside "
        "TLS (e.g. Postfix smtpd_tls_auth_only), the client cannot log in: its TLS ends at "
        "smtptap and the upstream leg is plain text%s",
        u->kind == UPSTREAM_TRANSPARENT ? " (transparent mode keeps it plain)"
        : u->kind == UPSTREAM_FIXED
            ? "; use -u starttls:HOST:PORT so smtptap upgrades the upstream leg too"
            : "");
}

static bool answer(struct session *s, const struct smtp_pending *p, const struct fault_rule *fault,
                   const struct buf *line, const char *why)
{
    struct buf kept, edited;
    buf_init(&kept);
    buf_init(&edited);
    if (!hello_memory_answer(&s->hello, p->verb, &kept)) return false;
    explain(s, p, line, why);
    struct smtp_pending faulted = *p;
    faulted.fault = fault;
    const uint8_t *bytes = buf_head(&kept);
    size_t len = buf_size(&kept);
    if (p->verb == SMTP_VERB_EHLO) explain_missing_auth(s, bytes, len);
    /* the server's reply, kept: the client gets it as smtptap's own, or edited ("<=") */
    if (hello_client_view(s, &faulted, bytes, len, &edited))
        bytes = buf_head(&edited), len = buf_size(&edited);
    else
        session_emit_own_reply(s, bytes, len);
    session_lint_reply(s, p, bytes, len, true);
    if (fault && !hello_fault_applied(&faulted))
        reply_faulted(s, &faulted, bytes, len, 250);
    else
        reply_send(s, bytes, len);
    buf_free(&kept);
    buf_free(&edited);
    return true;
}

void session_hello_after_starttls(struct session *s, const struct smtp_pending *p)
{
    char why[120];
    snprintf(why, sizeof why,
             "the client's STARTTLS ended at smtptap, so the server's connection is still in %s "
             "and was greeted already",
             session_upstream_in_tls(s) ? "the same TLS" : "plain text");
    bool answered = answer(s, p, s->hello_fault, &s->hello_line, why);
    assert(answered); /* the memory changes only while the upstream upgrades, and the client
                         is not read then */
    (void)answered;
    buf_reset(&s->hello_line);
}

bool session_hello_after_probe(struct session *s, const struct smtp_pending *p,
                               const struct buf *line)
{
    return answer(s, p, p->fault, line,
                  "the server's connection stays in plain text and was greeted already, by "
                  "the EHLO that asked it for STARTTLS");
}

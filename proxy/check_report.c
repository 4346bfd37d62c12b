/* check_report.c - the rows of `smtptap check-client` (check_report.h): each run's jsonl
 * events folded into what the client did and its verdict, then the table, its JSON and the
 * pass/fail. Pure: no processes, no files. */
#include "smtptap/check_report.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const action_words[] = {
    [CHECK_SENT_AUTH] = "sent credentials",
    [CHECK_SENT_MAIL] = "sent mail",
    [CHECK_TIMED_OUT] = "timed out",
    [CHECK_NO_CONNECT] = "did not connect",
    [CHECK_GAVE_UP] = "gave up",
    [CHECK_REFUSED] = "refused at handshake",
    [CHECK_ACTION_NONE] = "-",
};

const char *check_action_words(enum check_action a)
{
    return (unsigned)a <= CHECK_ACTION_NONE ? action_words[a] : "?";
}

struct check_row *check_report_add(struct check_report *r, const char *mode, bool control)
{
    if (r->nrows == CHECK_ROWS_MAX) return NULL;
    struct check_row *row = &r->rows[r->nrows++];
    memset(row, 0, sizeof *row);
    snprintf(row->mode, sizeof row->mode, "%s", mode);
    row->control = control;
    row->action = CHECK_ACTION_NONE;
    row->exit_code = -1;
    return row;
}

/* The verdict event's action id, as a check_action. */
static enum check_action action_of(const char *id)
{
    if (!id) return CHECK_ACTION_NONE;
    if (strcmp(id, "sent-credentials") == 0) return CHECK_SENT_AUTH;
    if (strcmp(id, "sent-mail") == 0) return CHECK_SENT_MAIL;
    if (strcmp(id, "gave-up") == 0) return CHECK_GAVE_UP;
    if (strcmp(id, "refused") == 0) return CHECK_REFUSED;
    return CHECK_ACTION_NONE;
}

/* A session's verdict: the row keeps the worst one. */
static void on_verdict(struct check_row *row, json_t *ev)
{
    json_t *v = json_object_get(ev, "verdict");
    enum check_action a = action_of(json_string_value(json_object_get(v, "action")));
    if (a >= row->action) return;
    row->action = a;
    row->good = json_is_true(json_object_get(v, "good"));
    const char *text = json_string_value(json_object_get(ev, "text"));
    if (!text) text = "";
    if (strncmp(text, "verdict: ", 9) == 0) text += 9;
    snprintf(row->verdict, sizeof row->verdict, "%s", text);
}

static bool starts_with_word(const char *line, const char *word)
{
    size_t n = strlen(word);
    return line && strncasecmp(line, word, n) == 0 && (line[n] == ' ' || line[n] == ':');
}

void check_row_event(struct check_row *row, const char *line, size_t len)
{
    json_t *ev = json_loadb(line, len, 0, NULL);
    const char *kind = json_string_value(json_object_get(ev, "kind"));
    if (!kind) {
        json_decref(ev);
        return;
    }
    if (strcmp(kind, "start") == 0) row->sessions++;
    if (strcmp(kind, "verdict") == 0) on_verdict(row, ev);
    if (strcmp(kind, "info") == 0 && json_object_get(ev, "handshake")) row->saw_tls = true;
    if (strcmp(kind, "command") == 0) {
        const char *cmd = json_string_value(json_object_get(ev, "line"));
        row->saw_auth = row->saw_auth || starts_with_word(cmd, "AUTH");
        row->saw_mail = row->saw_mail || starts_with_word(cmd, "MAIL");
        row->saw_clear = row->saw_clear || !json_is_true(json_object_get(ev, "tls"));
    }
    json_decref(ev);
}

/* The good certificate: did the client get anywhere with one it should trust? */
static void finish_control(struct check_row *row)
{
    row->action = row->saw_auth   ? CHECK_SENT_AUTH
                  : row->saw_mail ? CHECK_SENT_MAIL
                  : row->sessions ? CHECK_GAVE_UP
                                  : CHECK_NO_CONNECT;
    row->good = row->saw_auth || row->saw_mail;
    snprintf(row->verdict, sizeof row->verdict, "%s",
             row->good ? "control: with a certificate it can trust the client works"
                       : "control: the client did not send anything even with a certificate "
                         "it can trust, so the rows below prove little (does it use "
                         "SMTPTAP_PORT, and trust SMTPTAP_CA?)");
}

void check_row_finish(struct check_row *row, bool timed_out, int exit_code)
{
    row->timed_out = timed_out;
    row->exit_code = exit_code;
    if (row->control && !timed_out) {
        finish_control(row);
        return;
    }
    if (timed_out) {
        char was[CHECK_TEXT_MAX];
        snprintf(was, sizeof was, "%s", row->verdict);
        row->action = CHECK_TIMED_OUT;
        row->good = false;
        snprintf(row->verdict, sizeof row->verdict,
                 "the command was still running at the timeout and was stopped%s%.600s",
                 was[0] ? "; before that: " : "", was);
        return;
    }
    if (!row->sessions) {
        row->action = CHECK_NO_CONNECT;
        row->good = false;
        snprintf(row->verdict, sizeof row->verdict,
                 "the command (exit status %d) never connected to SMTPTAP_PORT or "
                 "SMTPTAP_TLS_PORT: nothing to judge",
                 exit_code);
        return;
    }
    if (row->action != CHECK_ACTION_NONE) return;
    if (!row->saw_clear) { /* no verdict: nothing was withheld from an implicit-TLS client */
        row->action = row->saw_auth   ? CHECK_SENT_AUTH
                      : row->saw_mail ? CHECK_SENT_MAIL
                                      : CHECK_GAVE_UP;
        row->good = true;
        snprintf(row->verdict, sizeof row->verdict,
                 "nothing to withhold: the client used implicit TLS (SMTPTAP_TLS_PORT), which "
                 "%s does not touch: good",
                 row->mode);
        return;
    }
    row->action = CHECK_GAVE_UP;
    row->good = false;
    snprintf(row->verdict, sizeof row->verdict, "no verdict: the session did not end");
}

bool check_report_passed(const struct check_report *r)
{
    for (size_t i = 0; i < r->nrows; i++)
        if (!r->rows[i].control && !r->rows[i].good) return false;
    return true;
}

void check_report_table(const struct check_report *r, const char *command, struct buf *out)
{
    buf_printf(out, "smtptap check-client: %s\n\n", command);
    buf_printf(out, "%-15s %-21s %s\n", "MODE", "WHAT THE CLIENT DID", "VERDICT");
    for (size_t i = 0; i < r->nrows; i++) {
        const struct check_row *row = &r->rows[i];
        buf_printf(out, "%-15s %-21s %s%s\n", row->mode, check_action_words(row->action),
                   row->control || row->good ? "" : "FAIL: ", row->verdict);
    }
    bool passed = check_report_passed(r);
    buf_printf(out, "\n%s\n",
               passed ? "PASS: the client refused every bad certificate and never sent "
                        "credentials in clear"
                      : "FAIL: see the rows marked FAIL");
}

static json_t *row_json(const struct check_row *row)
{
    return json_pack("{s:s, s:b, s:s, s:s, s:b, s:i, s:b, s:i}", "mode", row->mode, "control",
                     row->control, "action", check_action_words(row->action), "verdict",
                     row->verdict, "good", row->good, "sessions", (int)row->sessions, "timed_out",
                     row->timed_out, "exit_status", row->exit_code);
}

void check_report_json(const struct check_report *r, char *const *argv, struct buf *out)
{
    json_t *cmd = json_array(), *rows = json_array();
    for (size_t i = 0; argv && argv[i]; i++) json_array_append_new(cmd, json_string(argv[i]));
    for (size_t i = 0; i < r->nrows; i++) json_array_append_new(rows, row_json(&r->rows[i]));
    json_t *o = json_pack("{s:o, s:o, s:b}", "command", cmd, "rows", rows, "passed",
                          check_report_passed(r));
    char *text = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (text) buf_printf(out, "%s\n", text);
    free(text);
    json_decref(o);
}

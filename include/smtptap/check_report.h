/* check_report.h - the result of `smtptap check-client`: one row per mode run, what the
 * client did and the verdict, the table and its JSON, and the exit status. Pure: the runner
 * (check_client.c) feeds it the jsonl events of each run. */
#ifndef SMTPTAP_CHECK_REPORT_H
#define SMTPTAP_CHECK_REPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "smtptap/buf.h"

enum { CHECK_ROWS_MAX = 16, CHECK_TEXT_MAX = 700 };

/* What the client did in one run, worst first. */
enum check_action {
    CHECK_SENT_AUTH,   /* sent credentials */
    CHECK_SENT_MAIL,   /* sent mail */
    CHECK_TIMED_OUT,   /* still running at the timeout: stopped */
    CHECK_NO_CONNECT,  /* never connected */
    CHECK_GAVE_UP,     /* went away without credentials or mail */
    CHECK_REFUSED,     /* refused at the handshake */
    CHECK_ACTION_NONE, /* nothing seen yet */
};

struct check_row {
    char mode[32];     /* "expired", "strip", "good" */
    bool control;      /* the good certificate: shows that the client works at all */
    unsigned sessions; /* connections the client made */
    enum check_action action;
    bool good;                    /* what a careful client does */
    char verdict[CHECK_TEXT_MAX]; /* the worst session's verdict, or the runner's words */
    /* gathered from events for the control row, which has no verdict event */
    bool saw_auth, saw_mail, saw_tls;
    bool saw_clear; /* a command outside TLS */
    bool timed_out;
    int exit_code; /* the command's exit status, -1 when killed or not run */
};

struct check_report {
    struct check_row rows[CHECK_ROWS_MAX];
    size_t nrows;
};

/* A new row for a run of mode (control: the good certificate). */
struct check_row *check_report_add(struct check_report *r, const char *mode, bool control);
/* One jsonl line that smtptap wrote during the row's run (a line that does not parse is
 * ignored). */
void check_row_event(struct check_row *row, const char *line, size_t len);
/* After the run: the command timed out or exited with exit_code; settles action and verdict. */
void check_row_finish(struct check_row *row, bool timed_out, int exit_code);

/* "refused at handshake", "gave up", "sent mail", "sent credentials", "timed out",
 * "did not connect". */
const char *check_action_words(enum check_action a);
/* True when every row but the control is good. */
bool check_report_passed(const struct check_report *r);
/* The table (text) or its JSON ({"command": [...], "rows": [...], "passed": bool}). */
void check_report_table(const struct check_report *r, const char *command, struct buf *out);
void check_report_json(const struct check_report *r, char *const *argv, struct buf *out);

#endif

/* control_request.h - pure: what a control API request asks for, from its method, path and
 * query (routes), and a fault rule from a request body (JSON or the flag syntax as plain
 * text). No I/O; fuzzed (tests/fuzz/fuzz_control_request.c). */
#ifndef SMTPTAP_CONTROL_REQUEST_H
#define SMTPTAP_CONTROL_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtptap/fault.h"

enum control_route {
    ROUTE_NONE,         /* 404 */
    ROUTE_ASSET,        /* the web page's files */
    ROUTE_HEALTH,       /* GET /api/health */
    ROUTE_STATS,        /* GET /api/stats */
    ROUTE_SESSIONS,     /* GET /api/sessions */
    ROUTE_SESSION,      /* GET /api/sessions/N */
    ROUTE_CAPTURE,      /* GET /api/sessions/N/capture.FORMAT */
    ROUTE_EVENTS,       /* GET /api/events (Server-Sent Events) */
    ROUTE_FAULTS,       /* GET, POST /api/faults */
    ROUTE_FAULT,        /* GET, DELETE /api/faults/NAME */
    ROUTE_FAULTS_RESET, /* POST /api/faults/reset */
};

enum { CONTROL_MAX_FILTER = 32 };

struct control_request {
    enum control_route route;
    bool method_ok;            /* false: 405, allow says which methods */
    const char *allow;         /* "GET", "GET, POST", ... */
    uint64_t session;          /* ROUTE_SESSION, ROUTE_CAPTURE */
    char format[8];            /* ROUTE_CAPTURE: "txt", "jsonl", "pcap", "eml" */
    char name[FAULT_NAME_MAX]; /* ROUTE_FAULT, percent-decoded */
    /* query */
    uint64_t sessions[CONTROL_MAX_FILTER]; /* ?session=N[,M...] */
    size_t nsessions;
    uint64_t message; /* ?message=K (eml), 0: the first */
    bool content;     /* ?content=1: the event stream carries message lines too */
    bool summaries;   /* ?view=sessions: the stream carries session summaries only */
    uint64_t limit;   /* ?limit=N: GET /api/sessions lists the newest N; 0: all */
    char token[256];  /* ?access_token=T, "" when absent */
    const char *bad;  /* a query value that is wrong: 400 with this text */
};

/* Parses method and target (path with its query, as sent). Never fails: an unknown route is
 * ROUTE_NONE; a bad query value sets bad. */
void control_request_parse(const char *method, size_t method_len, const char *target,
                           size_t target_len, struct control_request *out);

/* The value of cookie name (e.g. "smtptap_token") in a Cookie header's value (len bytes, not
 * NUL-terminated): true with *value, *value_len pointing into it. */
bool control_cookie_value(const char *header, size_t len, const char *name, const char **value,
                          size_t *value_len);
/* Whether a Host header's value (len bytes; a port may follow) is an IP address (IPv6 in
 * brackets) or localhost: a name that is neither may be a DNS rebinding of 127.0.0.1. */
bool control_host_is_local_name(const char *host, size_t len);
/* A Last-Event-ID header's value (len bytes): true with *id when it is a decimal number of
 * 1 to 19 digits, nothing else. */
bool control_last_event_id(const char *value, size_t len, uint64_t *id);

/* A fault rule from a POST body: JSON {"rule": "VERB [GLOB]: ACTION", "name": "..."} or
 * {"name":..., "on":..., "match":..., "nth":..., "probability":..., "action":...} (the keys
 * of a [fault NAME] section), or the flag syntax as text. The name is "" when none was
 * given (the book names it). Returns 0, or -1 with err: the same words as the command line's
 * and the configuration file's for the rule itself. */
int control_fault_from_body(const uint8_t *body, size_t len, struct fault_rule *out, char *err,
                            size_t err_size);

#endif

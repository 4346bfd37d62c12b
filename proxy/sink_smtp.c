/* sink_smtp.c - the built-in server's protocol (see sink_smtp.h). It parses the client's
 * stream with the same framer the relay uses and answers like a permissive ESMTP server. */
#include "smtptap/sink_smtp.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static void reply(struct sink_smtp *s, const char *text)
{
    buf_append_str(&s->out, text);
    buf_append_str(&s->out, "\r\n");
}

void sink_smtp_init(struct sink_smtp *s, const char *host, uint64_t session)
{
    memset(s, 0, sizeof *s);
    smtp_in_init(&s->in);
    buf_init(&s->out);
    snprintf(s->host, sizeof s->host, "%s", host);
    s->session = session;
    buf_printf(&s->out, "220 %s ESMTP smtptap sink\r\n", s->host);
}

void sink_smtp_free(struct sink_smtp *s)
{
    smtp_in_free(&s->in);
    buf_free(&s->out);
}

static void reset_transaction(struct sink_smtp *s)
{
    s->in_mail = s->bdat_active = s->bdat_failed = false;
    s->rcpts = 0;
    s->size = 0;
}

static bool has_prefix(const uint8_t *arg, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && strncasecmp((const char *)arg, prefix, n) == 0;
}

static void on_ehlo(struct sink_smtp *s, bool extended, size_t arg_len)
{
    if (arg_len == 0) {
        reply(s, extended ? "501 5.5.4 Syntax: EHLO hostname" : "501 5.5.4 Syntax: HELO hostname");
        return;
    }
    reset_transaction(s);
    s->greeted = true;
    if (!extended) {
        buf_printf(&s->out, "250 %s\r\n", s->host);
        return;
    }
    buf_printf(&s->out,
               "250-%s\r\n250-PIPELINING\r\n250-SIZE %d\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
               "250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250 AUTH PLAIN LOGIN CRAM-MD5\r\n",
               s->host, SINK_MAX_SIZE);
}

static uint64_t mail_size_param(const uint8_t *arg, size_t len)
{
    for (size_t i = 0; i + 5 <= len; i++) {
        if ((i == 0 || arg[i - 1] == ' ') && strncasecmp((const char *)arg + i, "SIZE=", 5) == 0) {
            uint64_t v = 0;
            for (size_t j = i + 5; j < len && arg[j] >= '0' && arg[j] <= '9'; j++)
                v = v * 10 + (uint64_t)(arg[j] - '0');
            return v;
        }
    }
    return 0;
}

static void on_mail(struct sink_smtp *s, const uint8_t *arg, size_t len)
{
    if (!s->greeted) return reply(s, "503 5.5.1 Error: send HELO/EHLO first");
    if (s->in_mail) return reply(s, "503 5.5.1 Error: nested MAIL command");
    if (!has_prefix(arg, len, "FROM:")) return reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
    if (mail_size_param(arg, len) > SINK_MAX_SIZE)
        return reply(s, "552 5.3.4 Message size exceeds fixed limit");
    s->in_mail = true;
    reply(s, "250 2.1.0 Ok");
}

static void on_rcpt(struct sink_smtp *s, const uint8_t *arg, size_t len)
{
    if (!s->in_mail) return reply(s, "503 5.5.1 Error: need MAIL command");
    if (!has_prefix(arg, len, "TO:")) return reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
    s->rcpts++;
    reply(s, "250 2.1.5 Ok");
}

static void message_accepted(struct sink_smtp *s)
{
    s->messages++;
    if (s->size > SINK_MAX_SIZE) {
        reply(s, "552 5.3.4 Message size exceeds fixed limit");
    } else {
        buf_printf(&s->out, "250 2.0.0 Ok: queued as S%lluM%llu\r\n",
                   (unsigned long long)s->session, (unsigned long long)s->messages);
    }
    reset_transaction(s);
}

static void on_data(struct sink_smtp *s, size_t arg_len)
{
    const char *refusal = NULL;
    if (arg_len)
        refusal = "501 5.5.4 Syntax: DATA";
    else if (s->bdat_active)
        refusal = "503 5.5.1 Error: DATA after BDAT";
    else if (!s->in_mail)
        refusal = "503 5.5.1 Error: need MAIL command";
    else if (!s->rcpts)
        refusal = "554 5.5.1 Error: no valid recipients";
    if (refusal) {
        reply(s, refusal);
        smtp_in_resume(&s->in, 503);
        return;
    }
    reply(s, "354 End data with <CR><LF>.<CR><LF>");
    smtp_in_resume(&s->in, 354);
    s->size = 0;
}

static void on_bdat(struct sink_smtp *s, const uint8_t *arg, size_t len)
{
    uint64_t size;
    bool last;
    if (!smtp_bdat_parse(arg, len, &size, &last))
        return reply(s, "501 5.5.4 Syntax: BDAT size [LAST]");
    s->chunk = size;
    s->bdat_last = last;
    s->bdat_failed = !s->in_mail || !s->rcpts;
    if (s->in_mail && s->rcpts) s->bdat_active = true;
    if (size == 0) {
        /* No octets follow: answer now. */
        if (s->bdat_failed) return reply(s, "503 5.5.1 Error: need MAIL and RCPT before BDAT");
        if (last) return message_accepted(s);
        reply(s, "250 2.0.0 0 octets received");
    }
}

static void on_bdat_end(struct sink_smtp *s)
{
    if (s->bdat_failed) {
        s->bdat_failed = false;
        return reply(s, "503 5.5.1 Error: need MAIL and RCPT before BDAT");
    }
    if (s->bdat_last) return message_accepted(s);
    buf_printf(&s->out, "250 2.0.0 %llu octets received\r\n", (unsigned long long)s->chunk);
}

static const char *cram_challenge(struct sink_smtp *s, char *out, size_t size)
{
    char raw[200];
    int n = snprintf(raw, sizeof raw, "<%llu.%lld@%s>", (unsigned long long)s->session,
                     (long long)time(NULL), s->host);
    if (n < 0 || (size_t)n >= sizeof raw || size < 4 * (size_t)n / 3 + 8) return "";
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)raw, n);
    return out;
}

static bool valid_base64(const uint8_t *b, size_t len)
{
    if (len % 4) return false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = b[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '/' || (c == '=' && i >= len - 2);
        if (!ok) return false;
    }
    return true;
}

/* A SASL response: "=" (empty) or base64 (RFC 4954 4). */
static bool sasl_response_ok(const uint8_t *b, size_t len)
{
    return (len == 1 && b[0] == '=') || valid_base64(b, len);
}

static void on_auth(struct sink_smtp *s, const uint8_t *arg, size_t len)
{
    if (s->authenticated) return reply(s, "503 5.5.1 Error: already authenticated");
    if (s->in_mail) return reply(s, "503 5.5.1 Error: AUTH not allowed during a mail transaction");
    size_t mech = 0;
    while (mech < len && arg[mech] != ' ') mech++;
    bool initial = mech < len;
    char challenge[300];
    bool plain = mech == 5 && strncasecmp((const char *)arg, "PLAIN", 5) == 0;
    bool login = mech == 5 && strncasecmp((const char *)arg, "LOGIN", 5) == 0;
    if ((plain || login) && initial && !sasl_response_ok(arg + mech + 1, len - mech - 1))
        return reply(s, "501 5.5.2 Cannot decode response");
    if (plain) {
        if (initial) {
            s->authenticated = true;
            return reply(s, "235 2.7.0 Authentication successful");
        }
        s->auth = SINK_AUTH_PLAIN;
        return reply(s, "334 ");
    }
    if (login) {
        s->auth = initial ? SINK_AUTH_LOGIN_PASS : SINK_AUTH_LOGIN_USER;
        return reply(s, initial ? "334 UGFzc3dvcmQ6" : "334 VXNlcm5hbWU6");
    }
    if (mech == 8 && strncasecmp((const char *)arg, "CRAM-MD5", 8) == 0) {
        s->auth = SINK_AUTH_CRAM;
        buf_printf(&s->out, "334 %s\r\n", cram_challenge(s, challenge, sizeof challenge));
        return;
    }
    reply(s, "504 5.5.4 Unrecognized authentication type");
}

static void on_sasl_line(struct sink_smtp *s, const uint8_t *line, size_t len)
{
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    enum sink_auth_step step = s->auth;
    s->auth = SINK_AUTH_NONE;
    if (len == 1 && line[0] == '*') return reply(s, "501 5.7.0 Authentication cancelled");
    if (!sasl_response_ok(line, len)) return reply(s, "501 5.5.2 Cannot decode response");
    if (step == SINK_AUTH_LOGIN_USER) {
        s->auth = SINK_AUTH_LOGIN_PASS;
        return reply(s, "334 UGFzc3dvcmQ6");
    }
    s->authenticated = true;
    reply(s, "235 2.7.0 Authentication successful");
}

static void on_command(struct sink_smtp *s, const struct smtp_in_item *it)
{
    const uint8_t *arg;
    size_t arg_len;
    smtp_verb_parse(it->bytes, it->len, &arg, &arg_len);
    switch (it->verb) {
    case SMTP_VERB_HELO: on_ehlo(s, false, arg_len); break;
    case SMTP_VERB_EHLO: on_ehlo(s, true, arg_len); break;
    case SMTP_VERB_MAIL: on_mail(s, arg, arg_len); break;
    case SMTP_VERB_RCPT: on_rcpt(s, arg, arg_len); break;
    case SMTP_VERB_DATA: on_data(s, arg_len); break;
    case SMTP_VERB_BDAT: on_bdat(s, arg, arg_len); break;
    case SMTP_VERB_RSET: reset_transaction(s), reply(s, "250 2.0.0 Ok"); break;
    case SMTP_VERB_NOOP: reply(s, "250 2.0.0 Ok"); break;
    case SMTP_VERB_VRFY: reply(s, "252 2.0.0 Cannot VRFY user, but will accept message"); break;
    case SMTP_VERB_EXPN: reply(s, "502 5.5.1 EXPN not available"); break;
    case SMTP_VERB_HELP:
        reply(s, "214 2.0.0 smtptap sink: see https://www.rfc-editor.org/rfc/rfc5321");
        break;
    case SMTP_VERB_QUIT: reply(s, "221 2.0.0 Bye"), s->quit = true; break;
    case SMTP_VERB_AUTH:
        on_auth(s, arg, arg_len);
        smtp_in_resume(&s->in, s->auth == SINK_AUTH_NONE ? 500 : 334);
        break;
    case SMTP_VERB_STARTTLS:
        reply(s, "454 4.7.0 TLS not available in the built-in sink");
        smtp_in_resume(&s->in, 454);
        break;
    default: reply(s, "500 5.5.2 Error: command not recognized"); break;
    }
}

static void on_line(struct sink_smtp *s, const struct smtp_in_item *it)
{
    if (!it->complete) return; /* an over-long line: answered when it ends */
    if (!it->first) {
        s->auth = SINK_AUTH_NONE;
        smtp_in_resume(&s->in, 500); /* whatever the verb was, it is refused */
        return reply(s, "500 5.5.2 Error: line too long");
    }
    if (it->sasl) {
        on_sasl_line(s, it->bytes, it->len);
        smtp_in_resume(&s->in, s->auth == SINK_AUTH_NONE ? 235 : 334);
        return;
    }
    on_command(s, it);
}

void sink_smtp_input(struct sink_smtp *s, const uint8_t *bytes, size_t len)
{
    if (s->quit) return;
    smtp_in_feed(&s->in, bytes, len);
    for (;;) {
        struct smtp_in_item it;
        smtp_in_next(&s->in, &it);
        if (it.kind == SMTP_IN_NEED_MORE || it.kind == SMTP_IN_BLOCKED) return;
        if (it.kind == SMTP_IN_LINE) {
            on_line(s, &it);
        } else if (it.kind == SMTP_IN_CONTENT) {
            s->size += it.len;
            if (it.end && it.bdat)
                on_bdat_end(s);
            else if (it.end)
                s->size -= 3, message_accepted(s); /* minus ".\r\n" */
        }
        if (s->quit) return;
    }
}

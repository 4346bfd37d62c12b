/* sink_smtp.c - the built-in server's protocol (see sink_smtp.h). It parses the client's
 * stream with the same framer the relay uses and answers like a permissive ESMTP server. */
#include "smtptap/sink_smtp.h"

#include "smtptap/auth.h"

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

void sink_smtp_init(struct sink_smtp *s, const char *host, uint64_t session,
                    const struct sink_users *users)
{
    memset(s, 0, sizeof *s);
    smtp_in_init(&s->in);
    buf_init(&s->out);
    snprintf(s->host, sizeof s->host, "%s", host);
    s->session = session;
    s->users = users;
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
    buf_printf(
        &s->out,
        "250-%s\r\n250-PIPELINING\r\n250-SIZE %d\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
        "250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250 AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2\r\n",
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

static void auth_result(struct sink_smtp *s, bool ok)
{
    s->auth = SINK_AUTH_NONE;
    s->authenticated = ok;
    reply(s, ok ? "235 2.7.0 Authentication successful"
                : "535 5.7.8 Authentication credentials invalid");
}

/* authzid NUL authcid NUL password (RFC 4616). */
static void check_plain(struct sink_smtp *s, const char *d, long n)
{
    const char *nul1 = memchr(d, 0, (size_t)n);
    const char *nul2 = nul1 ? memchr(nul1 + 1, 0, (size_t)(d + n - nul1 - 1)) : NULL;
    if (!nul2 || memchr(nul2 + 1, 0, (size_t)(d + n - nul2 - 1))) {
        s->auth = SINK_AUTH_NONE;
        return reply(s, "501 5.5.2 Malformed PLAIN response");
    }
    auth_result(s, sink_users_password_ok(s->users, nul1 + 1, nul2 + 1));
}

/* "user hexdigest" (RFC 2195). */
static void check_cram(struct sink_smtp *s, char *d)
{
    char *space = strrchr(d, ' ');
    if (!space) return auth_result(s, false);
    *space = 0;
    auth_result(s, sink_users_cram_ok(s->users, d, s->challenge, space + 1));
}

/* "user=U^Aauth=Bearer T^A^A"; a refusal is a 334 JSON challenge, then 535. */
static void check_xoauth2(struct sink_smtp *s, const char *d, long n)
{
    char user[SINK_CRED_MAX] = "", token[SINK_CRED_MAX] = "";
    if (n > 5 && strncmp(d, "user=", 5) == 0) {
        const char *ctl = memchr(d, 1, (size_t)n);
        if (ctl && (size_t)(ctl - d - 5) < sizeof user) memcpy(user, d + 5, (size_t)(ctl - d - 5));
        const char *bearer = ctl ? strstr(ctl, "auth=Bearer ") : NULL;
        const char *end = bearer ? strchr(bearer, 1) : NULL;
        if (end && (size_t)(end - bearer - 12) < sizeof token)
            memcpy(token, bearer + 12, (size_t)(end - bearer - 12));
    }
    if (user[0] && token[0] && sink_users_password_ok(s->users, user, token))
        return auth_result(s, true);
    static const char json[] = "{\"status\":\"401\",\"schemes\":\"bearer\",\"scope\":"
                               "\"https://mail.google.com/\"}";
    char b64[128];
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)json, (int)strlen(json));
    s->auth = SINK_AUTH_XOAUTH2_FAILED;
    buf_printf(&s->out, "334 %s\r\n", b64);
}

/* One decoded SASL payload for the current step. */
static void auth_step(struct sink_smtp *s, char *d, long n)
{
    switch (s->auth) {
    case SINK_AUTH_PLAIN: return check_plain(s, d, n);
    case SINK_AUTH_LOGIN_USER:
        snprintf(s->login_user, sizeof s->login_user, "%.*s", (int)sizeof s->login_user - 1, d);
        s->auth = SINK_AUTH_LOGIN_PASS;
        return reply(s, "334 UGFzc3dvcmQ6");
    case SINK_AUTH_LOGIN_PASS:
        return auth_result(s, sink_users_password_ok(s->users, s->login_user, d));
    case SINK_AUTH_CRAM: return check_cram(s, d);
    case SINK_AUTH_XOAUTH2: return check_xoauth2(s, d, n);
    case SINK_AUTH_XOAUTH2_FAILED: return auth_result(s, false);
    case SINK_AUTH_NONE: return;
    }
}

/* Decodes a response ("=" is empty) and runs the step; 501 when it is not base64. */
static void auth_payload(struct sink_smtp *s, const uint8_t *b64, size_t len)
{
    char d[12288]; /* RFC 4954 4: a response line may be 12288 octets */
    long n = auth_b64_decode(b64, len, (uint8_t *)d, sizeof d - 1);
    if (n < 0) {
        s->auth = SINK_AUTH_NONE;
        return reply(s, "501 5.5.2 Cannot decode response");
    }
    d[n] = 0;
    auth_step(s, d, n);
}

static bool mech_is(const uint8_t *arg, size_t len, const char *name)
{
    return len == strlen(name) && strncasecmp((const char *)arg, name, len) == 0;
}

static void on_auth(struct sink_smtp *s, const uint8_t *arg, size_t len)
{
    if (s->authenticated) return reply(s, "503 5.5.1 Error: already authenticated");
    if (s->in_mail) return reply(s, "503 5.5.1 Error: AUTH not allowed during a mail transaction");
    size_t mech = 0;
    while (mech < len && arg[mech] != ' ') mech++;
    const uint8_t *ir = mech < len ? arg + mech + 1 : NULL;
    size_t ir_len = ir ? len - mech - 1 : 0;
    if (mech_is(arg, mech, "PLAIN"))
        s->auth = SINK_AUTH_PLAIN;
    else if (mech_is(arg, mech, "LOGIN"))
        s->auth = SINK_AUTH_LOGIN_USER;
    else if (mech_is(arg, mech, "XOAUTH2"))
        s->auth = SINK_AUTH_XOAUTH2;
    else if (mech_is(arg, mech, "CRAM-MD5") && !ir)
        s->auth = SINK_AUTH_CRAM;
    else
        return reply(s, "504 5.5.4 Unrecognized authentication type");
    if (ir) return auth_payload(s, ir, ir_len);
    if (s->auth == SINK_AUTH_LOGIN_USER) return reply(s, "334 VXNlcm5hbWU6");
    if (s->auth != SINK_AUTH_CRAM) return reply(s, "334 ");
    char b64[300];
    int n = snprintf(s->challenge, sizeof s->challenge, "<%llu.%lld@%s>",
                     (unsigned long long)s->session, (long long)time(NULL), s->host);
    if (n < 0 || (size_t)n >= sizeof s->challenge) n = (int)strlen(s->challenge);
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)s->challenge, n);
    buf_printf(&s->out, "334 %s\r\n", b64);
}

static void on_sasl_line(struct sink_smtp *s, const uint8_t *line, size_t len)
{
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    if (len == 1 && line[0] == '*') {
        s->auth = SINK_AUTH_NONE;
        return reply(s, "501 5.7.0 Authentication cancelled");
    }
    if (s->auth == SINK_AUTH_XOAUTH2_FAILED) return auth_result(s, false);
    auth_payload(s, line, len);
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

/* hello.c - pure: the server's hello memory per TLS state (see hello.h). */
#include "smtptap/hello.h"

#include <string.h>
#include <strings.h>

#include "smtptap/ehlo.h"

void hello_memory_init(struct hello_memory *m)
{
    memset(m, 0, sizeof *m);
    buf_init(&m->reply);
}

void hello_memory_free(struct hello_memory *m)
{
    buf_free(&m->reply);
}

/* The hello's argument, printable ASCII only, at most HELLO_NAME_MAX bytes. */
static void name_of(const uint8_t *line, size_t len, char *out)
{
    const uint8_t *arg;
    size_t arg_len, n = 0;
    smtp_verb_parse(line, len, &arg, &arg_len);
    while (arg_len > 0 &&
           (arg[arg_len - 1] == '\n' || arg[arg_len - 1] == '\r' || arg[arg_len - 1] == ' '))
        arg_len--;
    for (size_t i = 0; i < arg_len && n < HELLO_NAME_MAX; i++)
        out[n++] = arg[i] > 0x20 && arg[i] < 0x7f ? (char)arg[i] : '?';
    out[n] = 0;
}

void hello_memory_sent(struct hello_memory *m, const uint8_t *line, size_t len)
{
    const uint8_t *arg;
    size_t arg_len;
    m->sent_verb = smtp_verb_parse(line, len, &arg, &arg_len);
    name_of(line, len, m->sent_name);
}

void hello_memory_replied(struct hello_memory *m, int code, const uint8_t *reply, size_t len)
{
    if (m->sent_verb != SMTP_VERB_EHLO && m->sent_verb != SMTP_VERB_HELO) return;
    buf_reset(&m->reply);
    m->kept = code == 250;
    if (m->kept) {
        buf_append(&m->reply, reply, len);
        m->verb = m->sent_verb;
        memcpy(m->name, m->sent_name, sizeof m->name);
    }
    m->sent_verb = SMTP_VERB_UNKNOWN;
}

void hello_memory_forget(struct hello_memory *m)
{
    buf_reset(&m->reply);
    m->kept = false;
    m->sent_verb = SMTP_VERB_UNKNOWN;
}

void hello_memory_client_tls(struct hello_memory *m)
{
    m->client_owes_hello = true;
}

enum hello_route hello_route(const struct hello_memory *m, enum smtp_verb verb)
{
    if (verb != SMTP_VERB_EHLO && verb != SMTP_VERB_HELO) return HELLO_FORWARD;
    return m->client_owes_hello && m->kept ? HELLO_FROM_MEMORY : HELLO_FORWARD;
}

void hello_memory_client_greeted(struct hello_memory *m)
{
    m->client_owes_hello = false;
}

bool hello_memory_answer(const struct hello_memory *m, enum smtp_verb asked, struct buf *out)
{
    if (!m->kept) return false;
    if (asked == SMTP_VERB_EHLO && m->verb == SMTP_VERB_EHLO)
        buf_append(out, buf_head(&m->reply), buf_size(&m->reply));
    else
        ehlo_as_one_line(buf_head(&m->reply), buf_size(&m->reply), out);
    return true;
}

bool hello_memory_same_name(const struct hello_memory *m, const uint8_t *line, size_t len)
{
    char name[HELLO_NAME_MAX + 1];
    name_of(line, len, name);
    return strcasecmp(name, m->name) == 0;
}

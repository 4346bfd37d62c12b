/* replay_client_plan.c - what replay-client sends and how it judges (replay_client_plan.h). */
#include "smtptap/replay_client_plan.h"

#include <string.h>

bool replay_client_sends(const struct capture_dialog *d, size_t i)
{
    const struct capture_step *s = &d->steps[i];
    if (s->kind == STEP_DATA_END) return true;
    if (s->kind != STEP_COMMAND) return false;
    char verb[16];
    capture_verb(s->command, verb, sizeof verb);
    if (strcmp(verb, "STARTTLS") == 0) return false; /* replay-client's own, with starttls: */
    return !(s->local && !s->fault);
}

void replay_client_synthetic(uint64_t size, struct buf *out)
{
    static const char head[] = "Subject: smtptap replay-client synthetic body\r\n\r\n";
    static const char xs[] =
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    uint64_t made = sizeof head - 1;
    buf_append(out, head, sizeof head - 1);
    while (made < size) { /* lines of up to 76 x and CRLF: exactly size octets in all */
        uint64_t rem = size - made, k = rem < 2 ? rem : rem - 2;
        if (k > sizeof xs - 1) k = sizeof xs - 1;
        if (rem > k + 2 && rem - (k + 2) < 3) k -= 3; /* no 1- or 2-octet remainder */
        buf_append(out, xs, (size_t)k);
        if (rem >= 2) buf_append(out, "\r\n", 2);
        made += rem >= 2 ? k + 2 : k;
    }
}

void replay_client_body(const struct capture_step *s, struct buf *out, bool *synthetic)
{
    *synthetic = s->content_lines < s->msg_lines || !s->body;
    struct buf raw;
    buf_init(&raw);
    if (*synthetic)
        replay_client_synthetic(s->msg_size, &raw);
    else
        buf_append(&raw, s->body, s->body_len);
    const uint8_t *p = buf_head(&raw);
    size_t n = buf_size(&raw);
    bool line_start = true;
    for (size_t i = 0; i < n; i++) {
        if (line_start && p[i] == '.') buf_append(out, ".", 1);
        buf_append(out, p + i, 1);
        line_start = p[i] == '\n';
    }
    if (n && p[n - 1] != '\n') buf_append(out, "\r\n", 2);
    buf_append(out, ".\r\n", 3);
    buf_free(&raw);
}

bool replay_client_class_differs(int recorded, int got)
{
    return recorded / 100 != got / 100;
}

/* buf.h - a growable byte buffer with a read offset; the one byte container in smtptap. */
#ifndef SMTPTAP_BUF_H
#define SMTPTAP_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A buffer owns `data`. Readable bytes are data[off .. len). buf_free releases it. */
struct buf {
    uint8_t *data;
    size_t off;
    size_t len;
    size_t cap;
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
/* Appends n bytes (copied). Aborts on allocation failure: smtptap cannot continue without memory.
 */
static inline void buf_append(struct buf *b, const void *p, size_t n);
/* buf_append when there is no room yet (or n is 0). */
void buf_append_grow(struct buf *b, const void *p, size_t n);
static inline void buf_append_str(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Marks n readable bytes as consumed; compacts or releases storage when cheap. */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);
static inline size_t buf_size(const struct buf *b)
{
    return b->len - b->off;
}
/* The first readable byte. Never NULL: a buffer without storage (never fed, freed, released
 * once drained) gives a valid pointer to no bytes, so memcpy and memchr of buf_size() bytes
 * are always defined on it. */
static inline const uint8_t *buf_head(const struct buf *b)
{
    static const uint8_t none[1];
    return b->data ? b->data + b->off : none;
}

/* Inline: transcripts are made of many short appends (a prefix, a marker, a line). */
static inline void buf_append(struct buf *b, const void *p, size_t n)
{
    if (n && b->cap - b->len >= n) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
        return;
    }
    buf_append_grow(b, p, n);
}

static inline void buf_append_str(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

#endif

/* hello.h - pure: what the server was greeted with in the TLS state its connection is in now,
 * and whether a client's EHLO/HELO must reach it or be answered from that memory.
 *
 * A server sees one EHLO (or HELO) per TLS state of its own connection. When smtptap ends
 * the client's STARTTLS itself, the client greets again inside TLS (RFC 3207 4.2) while the
 * server's connection has not changed: forwarding that hello would show the server a second
 * one in the same state, which some servers refuse (OpenSMTPD: "503 5.5.1 Invalid command:
 * Already identified"). That one hello is answered from the server's last reply instead. */
#ifndef SMTPTAP_HELLO_H
#define SMTPTAP_HELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtptap/buf.h"
#include "smtptap/smtp.h"

enum { HELLO_NAME_MAX = 255 };

struct hello_memory {
    bool kept;                     /* the server accepted a hello in its current TLS state */
    bool client_owes_hello;        /* the client's TLS began at smtptap since that hello */
    enum smtp_verb verb;           /* EHLO or HELO: what the server was greeted with */
    struct buf reply;              /* owned: the server's 250 reply, as received */
    char name[HELLO_NAME_MAX + 1]; /* the domain it was greeted with, printable */
    enum smtp_verb sent_verb;      /* the hello on its way to the server, if any */
    char sent_name[HELLO_NAME_MAX + 1];
};

enum hello_route {
    HELLO_FORWARD,     /* the server must see it */
    HELLO_FROM_MEMORY, /* answer it from the kept reply; the server does not see it */
};

void hello_memory_init(struct hello_memory *m);
void hello_memory_free(struct hello_memory *m);
/* A hello line (the whole command, CRLF included) goes to the server. */
void hello_memory_sent(struct hello_memory *m, const uint8_t *line, size_t len);
/* The server's reply to the hello that went up: a 250 is kept, anything else forgets. */
void hello_memory_replied(struct hello_memory *m, int code, const uint8_t *reply, size_t len);
/* The server's connection changed its TLS state (its STARTTLS was accepted): what it was
 * greeted with before no longer counts. */
void hello_memory_forget(struct hello_memory *m);
/* The client's STARTTLS was answered by smtptap: its next hello is owed to smtptap. */
void hello_memory_client_tls(struct hello_memory *m);
/* Where a client hello of this verb goes (decides, changes nothing). */
enum hello_route hello_route(const struct hello_memory *m, enum smtp_verb verb);
/* The client greeted (its hello was forwarded or answered from memory): only the first hello
 * after the client's STARTTLS is owed to smtptap; a later one the server would have seen
 * without smtptap too. */
void hello_memory_client_greeted(struct hello_memory *m);
/* Appends to out the reply for a client hello of verb `asked`: the kept EHLO reply as is
 * for EHLO after EHLO; a one-line 250 with the first line's text otherwise (HELO asked, or
 * EHLO when the server was greeted with HELO: it granted no extensions). Returns false
 * (out untouched) when nothing is kept. */
bool hello_memory_answer(const struct hello_memory *m, enum smtp_verb asked, struct buf *out);
/* True when the client's hello line names the domain the server was greeted with. */
bool hello_memory_same_name(const struct hello_memory *m, const uint8_t *line, size_t len);

#endif

/* sink_auth.h - what the built-in sink believes about credentials: the [sink] users list,
 * and checking a PLAIN/LOGIN password, a CRAM-MD5 digest or an XOAUTH2 token against it.
 * An empty list accepts anyone. Pure: no I/O. */
#ifndef SMTPTAP_SINK_AUTH_H
#define SMTPTAP_SINK_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { SINK_USERS_MAX = 64, SINK_CRED_MAX = 256 };

struct sink_user {
    char name[SINK_CRED_MAX];
    char password[SINK_CRED_MAX];
};

struct sink_users {
    struct sink_user users[SINK_USERS_MAX];
    unsigned count;
};

/* Parses "alice:secret, bob:pw" (blanks around entries ignored; a password may contain ':').
 * Returns NULL or a static text saying what is wrong. */
const char *sink_users_parse(const char *spec, struct sink_users *out);
/* True when the list is empty, or name has exactly this password. */
bool sink_users_password_ok(const struct sink_users *u, const char *name, const char *password);
/* CRAM-MD5 (RFC 2195): digest is the lower-case hex HMAC-MD5 of challenge keyed with the
 * user's password. An empty list accepts any well-formed response. */
bool sink_users_cram_ok(const struct sink_users *u, const char *name, const char *challenge,
                        const char *hex_digest);

#endif

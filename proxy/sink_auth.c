/* sink_auth.c - the built-in sink's credential checks (see sink_auth.h). */
#include "smtptap/sink_auth.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *trim(const char *s, const char *end, size_t *len)
{
    while (s < end && isspace((unsigned char)*s)) s++;
    while (end > s && isspace((unsigned char)end[-1])) end--;
    *len = (size_t)(end - s);
    return s;
}

const char *sink_users_parse(const char *spec, struct sink_users *out)
{
    memset(out, 0, sizeof *out);
    const char *p = spec;
    while (*p) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        size_t len;
        const char *entry = trim(p, end, &len);
        if (len) {
            const char *colon = memchr(entry, ':', len);
            if (!colon || colon == entry)
                return "a list of user:password, e.g. alice:secret, bob:pw";
            size_t nlen = (size_t)(colon - entry), plen = len - nlen - 1;
            if (out->count == SINK_USERS_MAX) return "at most 64 users";
            if (nlen >= SINK_CRED_MAX || plen >= SINK_CRED_MAX)
                return "shorter names and passwords";
            struct sink_user *u = &out->users[out->count++];
            memcpy(u->name, entry, nlen);
            memcpy(u->password, colon + 1, plen);
        }
        p = comma ? comma + 1 : end;
    }
    return NULL;
}

static const struct sink_user *find(const struct sink_users *u, const char *name)
{
    for (unsigned i = 0; i < u->count; i++)
        if (strcmp(u->users[i].name, name) == 0) return &u->users[i];
    return NULL;
}

bool sink_users_password_ok(const struct sink_users *u, const char *name, const char *password)
{
    if (u->count == 0) return true;
    const struct sink_user *user = find(u, name);
    return user && strcmp(user->password, password) == 0;
}

bool sink_users_cram_ok(const struct sink_users *u, const char *name, const char *challenge,
                        const char *hex_digest)
{
    if (strlen(hex_digest) != 32) return false;
    if (u->count == 0) return true;
    const struct sink_user *user = find(u, name);
    if (!user) return false;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    HMAC(EVP_md5(), user->password, (int)strlen(user->password), (const unsigned char *)challenge,
         strlen(challenge), md, &md_len);
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    for (unsigned i = 0; i < md_len; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return strcasecmp(hex, hex_digest) == 0;
}

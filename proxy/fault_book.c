/* fault_book.c - the rules in force, the file's and the control API's (fault_book.h). */
#include "smtptap/fault_book.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A set no longer in force, and the sessions that may still hold it: those numbered up to
 * newest that were running when it was replaced. */
struct fault_book_retired {
    struct fault_set *set;
    uint64_t newest, holders;
    struct fault_book_retired *next;
};

void fault_book_init(struct fault_book *b, const struct fault_set *file)
{
    memset(b, 0, sizeof *b);
    b->file = file;
    b->in_force = file;
    fault_set_init(&b->api);
    b->next_api_number = 1;
}

static void free_set(struct fault_set *s)
{
    if (!s) return;
    fault_set_free(s);
    free(s);
}

void fault_book_free(struct fault_book *b)
{
    while (b->retired) {
        struct fault_book_retired *r = b->retired;
        b->retired = r->next;
        free_set(r->set);
        free(r);
    }
    free_set(b->merged);
    fault_set_free(&b->api);
    memset(b, 0, sizeof *b);
}

/* The merged set stops being in force: kept while a running session may hold it. */
static void retire(struct fault_book *b, uint64_t live, uint64_t newest)
{
    if (!b->merged) return;
    if (live == 0) {
        free_set(b->merged);
    } else {
        struct fault_book_retired *r = calloc(1, sizeof *r);
        if (!r) abort();
        *r = (struct fault_book_retired){.set = b->merged, .newest = newest, .holders = live};
        r->next = b->retired;
        b->retired = r;
    }
    b->merged = NULL;
}

/* Makes in_force again from the API's rules and the file's. */
static void rebuild(struct fault_book *b, uint64_t live, uint64_t newest)
{
    retire(b, live, newest);
    if (b->api.count == 0) {
        b->in_force = b->file;
        return;
    }
    b->merged = calloc(1, sizeof *b->merged);
    if (!b->merged) abort();
    fault_set_init(b->merged);
    for (size_t i = 0; i < b->api.count; i++) fault_set_add(b->merged, &b->api.rules[i]);
    for (size_t i = 0; b->file && i < b->file->count; i++)
        fault_set_add(b->merged, &b->file->rules[i]);
    b->in_force = b->merged;
}

void fault_book_set_file(struct fault_book *b, const struct fault_set *file, uint64_t live,
                         uint64_t newest)
{
    b->file = file;
    rebuild(b, live, newest);
}

enum fault_origin fault_book_origin(const struct fault_book *b, size_t i)
{
    if (b->merged && i < b->api.count) return FAULT_ORIGIN_API;
    const struct fault_rule *r = &b->in_force->rules[i];
    return strncmp(r->name, "flag ", 5) == 0 ? FAULT_ORIGIN_FLAG : FAULT_ORIGIN_CONFIG;
}

const char *fault_origin_name(enum fault_origin o)
{
    switch (o) {
    case FAULT_ORIGIN_FLAG: return "flag";
    case FAULT_ORIGIN_CONFIG: return "config";
    default: return "api";
    }
}

static bool named_in(const struct fault_set *s, const char *name)
{
    for (size_t i = 0; s && i < s->count; i++)
        if (strcmp(s->rules[i].name, name) == 0) return true;
    return false;
}

int fault_book_add(struct fault_book *b, struct fault_rule *r, uint64_t live, uint64_t newest,
                   char *err, size_t err_size)
{
    if (!r->name[0]) {
        do snprintf(r->name, sizeof r->name, "api-%llu", (unsigned long long)b->next_api_number++);
        while (named_in(&b->api, r->name) || named_in(b->file, r->name));
    }
    if (named_in(&b->api, r->name) || named_in(b->file, r->name)) {
        snprintf(err, err_size,
                 "a fault rule named \"%s\" exists already; remove it first or choose another name",
                 r->name);
        return -1;
    }
    fault_set_add(&b->api, r);
    rebuild(b, live, newest);
    return 0;
}

int fault_book_remove(struct fault_book *b, const char *name, struct fault_rule *out, uint64_t live,
                      uint64_t newest)
{
    for (size_t i = 0; i < b->api.count; i++) {
        if (strcmp(b->api.rules[i].name, name) != 0) continue;
        *out = b->api.rules[i];
        memmove(&b->api.rules[i], &b->api.rules[i + 1],
                (b->api.count - i - 1) * sizeof b->api.rules[0]);
        b->api.count--;
        rebuild(b, live, newest);
        return 0;
    }
    return named_in(b->file, name) ? -2 : -1;
}

size_t fault_book_reset(struct fault_book *b, uint64_t live, uint64_t newest)
{
    size_t n = b->api.count;
    b->api.count = 0;
    if (n) rebuild(b, live, newest);
    return n;
}

void fault_book_session_ended(struct fault_book *b, uint64_t id)
{
    for (struct fault_book_retired **p = &b->retired; *p;) {
        struct fault_book_retired *r = *p;
        if (id <= r->newest && r->holders && --r->holders == 0) {
            *p = r->next;
            free_set(r->set);
            free(r);
            continue;
        }
        p = &r->next;
    }
}

size_t fault_book_retired_count(const struct fault_book *b)
{
    size_t n = 0;
    for (const struct fault_book_retired *r = b->retired; r; r = r->next) n++;
    return n;
}

/* fault_book.h - pure: the fault rules in force, from two origins kept apart: the file's (the
 * --fault flags and [fault NAME] sections, replaced as a whole on SIGHUP) and the control
 * API's (added and removed one by one). Sessions read one set, `in_force`: the API's rules
 * first (a test's rule of the moment wins), then the file's. A set that stops being in force
 * may still be held by a session that started before: it is kept until every session that
 * could hold it has ended (fault_book_session_ended), then freed. No I/O. */
#ifndef SMTPTAP_FAULT_BOOK_H
#define SMTPTAP_FAULT_BOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtptap/fault.h"

struct fault_book_retired;

struct fault_book {
    const struct fault_set *file; /* borrowed: the configuration's, or SIGHUP's newest */
    struct fault_set api;         /* owned: the control API's rules, in the order added */
    const struct fault_set *in_force;
    struct fault_set *merged; /* owned: in_force when the API has rules, else NULL */
    struct fault_book_retired *retired;
    uint64_t next_api_number; /* "api-N" names */
};

void fault_book_init(struct fault_book *b, const struct fault_set *file);
void fault_book_free(struct fault_book *b);
/* A new file set (SIGHUP). live: the sessions now running, newest: the highest session
 * number given out so far (both to retire the set in force). */
void fault_book_set_file(struct fault_book *b, const struct fault_set *file, uint64_t live,
                         uint64_t newest);

enum fault_origin { FAULT_ORIGIN_FLAG, FAULT_ORIGIN_CONFIG, FAULT_ORIGIN_API };
/* Where rule i of in_force came from. */
enum fault_origin fault_book_origin(const struct fault_book *b, size_t i);
const char *fault_origin_name(enum fault_origin o); /* "flag", "config", "api" */

/* Adds rule r (its name "" for an automatic "api-N"). Returns 0, or -1 with err: the name
 * is taken by a rule of either origin. */
int fault_book_add(struct fault_book *b, struct fault_rule *r, uint64_t live, uint64_t newest,
                   char *err, size_t err_size);
/* Removes the API rule named name into *out. 0; -1 no such rule; -2 it is the file's. */
int fault_book_remove(struct fault_book *b, const char *name, struct fault_rule *out, uint64_t live,
                      uint64_t newest);
/* Removes every API rule; returns how many. */
size_t fault_book_reset(struct fault_book *b, uint64_t live, uint64_t newest);

/* Session number id has ended: retired sets no session can hold any more are freed. */
void fault_book_session_ended(struct fault_book *b, uint64_t id);
/* How many retired sets are still kept (tests). */
size_t fault_book_retired_count(const struct fault_book *b);

#endif

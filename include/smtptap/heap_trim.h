/* heap_trim.h - when the freed heap of finished sessions is handed back to the system:
 * the policy only (pure, no I/O); server.c calls malloc_trim when it says so. */
#ifndef SMTPTAP_HEAP_TRIM_H
#define SMTPTAP_HEAP_TRIM_H

#include <stdbool.h>
#include <stdint.h>

enum { HEAP_TRIM_MIN_PEAK = 64 }; /* fewer concurrent sessions than this leave little behind */

struct heap_trim {
    uint64_t peak;  /* most concurrent sessions since the heap was last trimmed with none left */
    uint64_t level; /* most concurrent sessions since the last trim */
};

/* The number of sessions changed to `nsessions`: true when the heap is to be trimmed now
 * (they fell to a quarter of the level since the last trim, or to none after a burst of at
 * least HEAP_TRIM_MIN_PEAK). At most about log4(peak) + 1 trims per burst. */
bool heap_trim_due(struct heap_trim *t, uint64_t nsessions);

#endif

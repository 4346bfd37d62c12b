/* heap_trim.c - the policy for handing freed session memory back (see heap_trim.h). */
#include "smtptap/heap_trim.h"

bool heap_trim_due(struct heap_trim *t, uint64_t nsessions)
{
    if (nsessions > t->peak) t->peak = nsessions;
    if (nsessions > t->level) t->level = nsessions;
    if (t->peak < HEAP_TRIM_MIN_PEAK) return false;
    if (nsessions == 0 ? t->level == 0 : nsessions > t->level / 4) return false;
    t->level = nsessions;
    if (nsessions == 0) t->peak = 0; /* the burst is over: the next one starts from nothing */
    return true;
}

/* fuzz.h - what the libFuzzer targets in tests/fuzz share: reading control bytes off the
 * front of an input, cut points derived from the input for the split-versus-whole oracles,
 * and a failure that prints what differed and aborts (libFuzzer then saves the input). */
#ifndef SMTPTAP_FUZZ_H
#define SMTPTAP_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The unread rest of an input. */
struct fuzz_in {
    const uint8_t *p;
    size_t n;
};

/* The next byte, or 0 once the input is used up. */
uint8_t fuzz_u8(struct fuzz_in *in);
/* The next two bytes, little-endian (0 for what is missing). */
uint16_t fuzz_u16(struct fuzz_in *in);
/* Takes up to max bytes off the front: *len receives how many, the result points at them. */
const uint8_t *fuzz_bytes(struct fuzz_in *in, size_t max, size_t *len);
/* Takes bytes up to (not including) the next `stop` byte, which is skipped; the rest of the
 * input when there is none. */
const uint8_t *fuzz_until(struct fuzz_in *in, uint8_t stop, size_t *len);

/* Where to cut len bytes into pieces, chosen by seed: one byte at a time, or 1-8 random cuts.
 * Writes increasing offsets in (0, len) to cuts (room for len entries) and returns how many. */
size_t fuzz_cuts(uint32_t seed, size_t len, size_t *cuts);

/* A small deterministic generator for targets that need more choices than the input gives. */
uint32_t fuzz_rand(uint32_t *state);

/* Prints "fuzz: <what>" with the bytes involved, then aborts. */
void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Writes an escaped rendering of up to 300 bytes to stderr (for failure messages). */
void fuzz_dump(const char *label, const uint8_t *b, size_t n);

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) fuzz_fail(__VA_ARGS__);                                                       \
    } while (0)

/* A NUL-terminated copy of b[0..n) (malloc; the caller frees). */
char *fuzz_strndup(const uint8_t *b, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif

/* diff_main.h - `smtptap diff A.jsonl B.jsonl`: where two recorded sessions diverge. */
#ifndef SMTPTAP_DIFF_MAIN_H
#define SMTPTAP_DIFF_MAIN_H

/* argv[0] is "diff". Prints the table on stdout; returns the exit status: 0 the same dialog,
 * 1 they differ, 64 a usage error, 65 a capture that is not a readable smtptap jsonl session
 * (the message names the file and the line), 66 a file that cannot be opened. */
int diff_main(int argc, char **argv);

#endif

/* check_client.h - `smtptap check-client [--json] [--timeout DURATION] [--ca-dir DIR] --
 * COMMAND ...`: runs a mail client once per bad certificate (and once with STARTTLS
 * withheld) against smtptap's own server and says whether it protected what it sent. */
#ifndef SMTPTAP_CHECK_CLIENT_H
#define SMTPTAP_CHECK_CLIENT_H

/* argv[0] is "check-client". Returns the exit status: 0 the client passed, 1 it did not,
 * 64 a usage error (a command that cannot be found included), 69/70 smtptap could not run. */
int check_client_main(int argc, char **argv);

#endif

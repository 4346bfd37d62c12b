/* replay_client.h - `smtptap replay-client CAPTURE.jsonl --to [tls:|starttls:]HOST:PORT`:
 * the recorded client's side replayed against a server, each reply next to the recorded. */
#ifndef SMTPTAP_REPLAY_CLIENT_H
#define SMTPTAP_REPLAY_CLIENT_H

/* argv[0] is "replay-client". Prints the table on stdout; returns the exit status: 0 every
 * reply of the recorded class, 1 one of another class (or the dialog stopped), 64 usage,
 * 65 a bad capture, 66 an unreadable file, 69 the server cannot be reached. */
int replay_client_main(int argc, char **argv);

#endif

/* main.c - smtptap's entry point: builds the configuration from the command line and the
 * INI file, then runs the server. */
#include <stdio.h>
#include <string.h>

#include "smtptap/buf.h"
#include "smtptap/check_client.h"
#include "smtptap/config.h"
#include "smtptap/diff_main.h"
#include "smtptap/replay_client.h"
#include "smtptap/server.h"

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "check-client") == 0)
        return check_client_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "diff") == 0) return diff_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "replay-client") == 0)
        return replay_client_main(argc - 1, argv + 1);
    static struct config cfg;
    struct buf err;
    buf_init(&err);
    enum config_result r = config_from_args(&cfg, argc, argv, &err);
    switch (r) {
    case CONFIG_OK: break;
    case CONFIG_HELP: fputs(config_usage(), stdout); return 0;
    case CONFIG_VERSION: printf("smtptap %s\n", SMTPTAP_VERSION); return 0;
    case CONFIG_PRINT_CA: {
        int rc = server_print_ca(&cfg);
        config_free(&cfg);
        buf_free(&err);
        return rc;
    }
    default:
        fprintf(stderr, "smtptap: %.*s\n", (int)buf_size(&err), (const char *)buf_head(&err));
        buf_free(&err);
        config_free(&cfg);
        return (int)r;
    }
    buf_free(&err);
    int rc = server_run(&cfg);
    config_free(&cfg);
    return rc;
}

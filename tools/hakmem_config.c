/* hakmem-config: print hakmem's effective configuration (as the current
 * environment sets it) or, with --markdown, the configuration reference
 * that docs/CONFIG.md holds. */
#include <stdio.h>
#include <string.h>

#include "hakmem.h"

int main(int argc, char **argv)
{
    int markdown = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--markdown") == 0) {
            markdown = 1;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("%s\n", hakmem_version());
            return 0;
        } else {
            fprintf(stderr, "usage: %s [--markdown | --version]\n", argv[0]);
            return 2;
        }
    }
    return hakmem_config_print(1, markdown) == 0 ? 0 : 1;
}

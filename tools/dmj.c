/* dmj: the command-line tool (import, export, keys, stats, verify, backup, prune). */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        printf("usage: dmj COMMAND [OPTIONS]\n");
        return argc < 2 ? 2 : 0;
    }
    fprintf(stderr, "dmj: unknown command '%s'\n", argv[1]);
    return 2;
}

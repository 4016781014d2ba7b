/* benchmarks/churn_child.c: the short-lived process of churn.c: touch 64 KiB, exit. */
#include <stdlib.h>
#include <string.h>

int main(void)
{
    char *p = malloc(64 << 10);
    if (p)
        memset(p, 1, 64 << 10);
    return 0;
}

#include <stdio.h>

int main(void) {
    printf("hello from a pinned toolchain\n");
    return 0;
}

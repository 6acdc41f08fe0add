#include <stdio.h>

#include <vocohook/vocohook.h>

int main(void)
{
    printf("vocohook %s\n", vh_version());
    return 0;
}

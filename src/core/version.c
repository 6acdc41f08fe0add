#include <vocohook/vocohook.h>

#include "core/banned.h"

const char *vh_version(void)
{
    return VH_VERSION_STRING;
}

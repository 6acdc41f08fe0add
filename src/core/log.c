#include <vocohook/log.h>

#include "core/banned.h"

const char *vh_log_level_name(enum vh_log_level level)
{
    switch (level) {
    case VH_LOG_ERROR:
        return "error";
    case VH_LOG_WARN:
        return "warn";
    case VH_LOG_INFO:
        return "info";
    case VH_LOG_DEBUG:
        return "debug";
    }
    return "info";
}

/*
 * PLACEHOLDER until the JSON module lands: only the allocator hook.
 */
#include <jansson.h>

#include <vocohook/alloc.h>

#include "core/alloc_int.h"
#include "core/banned.h"

void vh__json_use_allocator(void)
{
    json_set_alloc_funcs(vh_malloc, vh_free);
}

/*
 * Private to core: lets json.c follow the allocation hook.
 */
#ifndef VH_CORE_ALLOC_INT_H
#define VH_CORE_ALLOC_INT_H

/* Points jansson's allocator at vh_malloc/vh_free. Defined in json.c. */
void vh__json_use_allocator(void);

#endif

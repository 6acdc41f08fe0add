/*
 * Macros shared by every public header: symbol visibility and printf checking.
 */
#ifndef VOCOHOOK_COMMON_H
#define VOCOHOOK_COMMON_H

#if defined(VH_BUILDING_LIBRARY) && defined(__GNUC__)
#define VH_API __attribute__((visibility("default")))
#else
#define VH_API
#endif

#if defined(__GNUC__)
#define VH_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define VH_NODISCARD         __attribute__((warn_unused_result))
#else
#define VH_PRINTF(fmt, args)
#define VH_NODISCARD
#endif

#define VH_VERSION_STRING "0.1.0"

#endif

/*
 * libvocohook: the umbrella header. Include this, or the single headers you need.
 */
#ifndef VOCOHOOK_VOCOHOOK_H
#define VOCOHOOK_VOCOHOOK_H

#include <vocohook/common.h>
#include <vocohook/error.h>
#include <vocohook/alloc.h>
#include <vocohook/buf.h>
#include <vocohook/clock.h>
#include <vocohook/id.h>
#include <vocohook/event.h>
#include <vocohook/sign.h>
#include <vocohook/presign.h>
#include <vocohook/store.h>
#include <vocohook/log.h>
#include <vocohook/api.h>
#include <vocohook/server.h>
#include <vocohook/config.h>
#include <vocohook/policy.h>
#include <vocohook/engine.h>
#include <vocohook/sender.h>
#include <vocohook/receive.h>

/* The library's version, "MAJOR.MINOR.PATCH". */
VH_API const char *vh_version(void);

#endif

/*
 * Functions we never call (git's banned.h). Included last in every .c file, so a use turns
 * into a compile error naming the rule. Use vh_buf / snprintf, vh_time_* and strtol-style
 * parsing with explicit bounds instead.
 */
#ifndef VH_BANNED_H
#define VH_BANNED_H

#define VH_BANNED(func) sorry_##func##_is_a_banned_function

#undef strcpy
#define strcpy(x, y) VH_BANNED(strcpy)
#undef strcat
#define strcat(x, y) VH_BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) VH_BANNED(strncpy)
#undef strncat
#define strncat(x, y, n) VH_BANNED(strncat)
#undef sprintf
#define sprintf(...) VH_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) VH_BANNED(vsprintf)
#undef strtok
#define strtok(x, y) VH_BANNED(strtok)
#undef gets
#define gets(x) VH_BANNED(gets)
#undef atoi
#define atoi(x) VH_BANNED(atoi)
#undef atol
#define atol(x) VH_BANNED(atol)
#undef gmtime
#define gmtime(t) VH_BANNED(gmtime)
#undef localtime
#define localtime(t) VH_BANNED(localtime)
#undef ctime
#define ctime(t) VH_BANNED(ctime)
#undef asctime
#define asctime(t) VH_BANNED(asctime)

#endif

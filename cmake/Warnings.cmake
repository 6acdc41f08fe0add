# The warning set of STYLE.md §10, applied per target. -Werror only for developers and CI
# (VH_DEVELOPER=ON), so a new compiler never breaks a release build.
include(CheckCCompilerFlag)

set(VH_WARNINGS
    -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
    -Wold-style-definition -Wpointer-arith -Wwrite-strings -Wcast-qual -Wundef -Wvla
    -Wformat=2 -Wimplicit-fallthrough -Werror=implicit-function-declaration -fno-common
    -Wconversion -Wno-sign-conversion)
if(CMAKE_C_COMPILER_ID STREQUAL "GNU")
    list(APPEND VH_WARNINGS -Wduplicated-cond -Wlogical-op)
elseif(CMAKE_C_COMPILER_ID MATCHES "Clang")
    list(APPEND VH_WARNINGS -Wcomma)
endif()
if(VH_DEVELOPER)
    list(APPEND VH_WARNINGS -Werror)
endif()

function(vh_set_warnings target)
    target_compile_options(${target} PRIVATE ${VH_WARNINGS})
endfunction()

# Test code (cmocka's macros) is held to the base set without -Wconversion noise.
function(vh_set_test_warnings target)
    set(w ${VH_WARNINGS})
    list(REMOVE_ITEM w -Wconversion -Wmissing-prototypes -Wcast-qual)
    target_compile_options(${target} PRIVATE ${w})
endfunction()
